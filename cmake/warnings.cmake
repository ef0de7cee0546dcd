set(FERRY_WARNINGS -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wpointer-arith -Wformat=2 -Wvla -Wundef -Wcast-align -Wwrite-strings
    -Wno-unused-parameter)
if(FERRY_WERROR)
  list(APPEND FERRY_WARNINGS -Werror)
endif()

if(FERRY_SANITIZE)
  string(REPLACE "," ";" _san "${FERRY_SANITIZE}")
  foreach(s ${_san})
    add_compile_options(-fsanitize=${s} -fno-omit-frame-pointer)
    add_link_options(-fsanitize=${s})
  endforeach()
  add_compile_options(-fno-sanitize-recover=all)
endif()

function(ferry_apply_warnings target)
  target_compile_options(${target} PRIVATE ${FERRY_WARNINGS})
endfunction()
