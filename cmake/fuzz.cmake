# libFuzzer support (-DFERRY_FUZZ=ON, clang only). Included by tests/fuzz/.
#
# The fuzz targets need the library compiled with coverage instrumentation and
# sanitizers, but the rest of the build (ferry, ferry-tests, the CLI) must stay
# as configured. So the library is compiled a second time for the fuzzers:
# ferry_fuzz_library() mirrors every module's OBJECT library (and ferry_bench,
# whose sample devices the fuzzers register) into one static archive built with
# FERRY_FUZZ_FLAGS, reading each target's sources, include directories,
# definitions, options and link libraries, so a module that grows needs no
# change here.

set(FERRY_FUZZ_FLAGS -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
    -fno-sanitize-recover=all)

# ferry_fuzz_supported(<var>): TRUE when the C compiler can build libFuzzer targets.
function(ferry_fuzz_supported var)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(WARNING "FERRY_FUZZ needs clang (configure with -DCMAKE_C_COMPILER=clang); "
      "the C compiler is ${CMAKE_C_COMPILER_ID}: no fuzz targets")
    set(${var} FALSE PARENT_SCOPE)
    return()
  endif()
  include(CheckCSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer,address,undefined")
  check_c_source_compiles("
    #include <stddef.h>
    #include <stdint.h>
    int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }"
    FERRY_HAVE_LIBFUZZER)
  if(NOT FERRY_HAVE_LIBFUZZER)
    message(WARNING "clang cannot link -fsanitize=fuzzer (Debian: install libclang-rt-dev): "
      "no fuzz targets")
  endif()
  set(${var} ${FERRY_HAVE_LIBFUZZER} PARENT_SCOPE)
endfunction()

# ferry_fuzz_library(): the static library ferry_fuzz_lib, a coverage- and
# sanitizer-instrumented copy of libferry plus ferry_bench.
function(ferry_fuzz_library)
  get_property(modules GLOBAL PROPERTY FERRY_MODULES)
  set(objs "")
  set(libs "")
  foreach(t ${modules} ferry_bench)
    get_target_property(srcs ${t} SOURCES)
    get_target_property(dir ${t} SOURCE_DIR)
    get_target_property(incs ${t} INCLUDE_DIRECTORIES)
    get_target_property(defs ${t} COMPILE_DEFINITIONS)
    get_target_property(opts ${t} COMPILE_OPTIONS)
    get_target_property(deps ${t} LINK_LIBRARIES)
    set(abs "")
    foreach(s ${srcs})
      if(IS_ABSOLUTE ${s})
        list(APPEND abs ${s})
      else()
        list(APPEND abs ${dir}/${s})
      endif()
    endforeach()
    if(NOT abs)
      continue()
    endif()
    add_library(fuzzobj_${t} OBJECT ${abs})
    target_include_directories(fuzzobj_${t} PRIVATE ${FERRY_INCLUDE_DIR}
      ${FERRY_PRIVATE_INCLUDE_DIR} ${dir})
    if(incs)
      target_include_directories(fuzzobj_${t} PRIVATE ${incs})
    endif()
    if(defs)
      target_compile_definitions(fuzzobj_${t} PRIVATE ${defs})
    endif()
    if(opts)
      # Warnings are the normal build's job; a fuzz build must not stop on one.
      list(REMOVE_ITEM opts -Werror)
      target_compile_options(fuzzobj_${t} PRIVATE ${opts})
    endif()
    target_compile_options(fuzzobj_${t} PRIVATE ${FERRY_FUZZ_FLAGS} -fsanitize=fuzzer-no-link)
    foreach(d ${deps})
      # The library's own targets are what is being mirrored; keep the rest.
      if(NOT d MATCHES "^ferry")
        list(APPEND libs ${d})
      endif()
    endforeach()
    list(APPEND objs $<TARGET_OBJECTS:fuzzobj_${t}>)
  endforeach()
  list(REMOVE_DUPLICATES libs)
  add_library(ferry_fuzz_lib STATIC ${objs})
  target_include_directories(ferry_fuzz_lib PUBLIC ${FERRY_INCLUDE_DIR} ${CMAKE_SOURCE_DIR})
  target_link_libraries(ferry_fuzz_lib PUBLIC ${libs})
endfunction()

# ferry_fuzz_target(name src...): a libFuzzer executable linked with ferry_fuzz_lib.
function(ferry_fuzz_target name)
  add_executable(${name} ${ARGN})
  target_compile_definitions(${name} PRIVATE _GNU_SOURCE)
  target_compile_options(${name} PRIVATE ${FERRY_FUZZ_FLAGS} -fsanitize=fuzzer)
  ferry_apply_warnings(${name})
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE ferry_fuzz_lib)
  set_property(GLOBAL APPEND PROPERTY FERRY_FUZZ_TARGETS ${name})
endfunction()
