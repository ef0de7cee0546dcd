# ferry_publish_headers(hdr...): make a module's public headers visible as
# <ferry/NAME.h> in the build tree. Symlinks, so an edit needs no re-configure.
function(ferry_publish_headers)
  file(MAKE_DIRECTORY ${FERRY_INCLUDE_DIR}/ferry)
  foreach(h ${ARGN})
    get_filename_component(name ${h} NAME)
    get_filename_component(abs ${h} ABSOLUTE)
    file(CREATE_LINK ${abs} ${FERRY_INCLUDE_DIR}/ferry/${name} SYMBOLIC)
  endforeach()
endfunction()
