# Embeds every kernel source into the binary at build time (no Python needed), so an installed
# clquant runs anywhere; CLQ_KERNEL_DIR still points the runtime at a source folder instead.
function(clq_embed_kernels out_var root)
  set(out ${CMAKE_BINARY_DIR}/generated/kernels_embedded.cpp)
  # '|' separates the files: a ';' would split the command line in the shell.
  string(REPLACE ";" "|" files_arg "${ARGN}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DROOT=${root} -DOUT=${out} "-DFILES=${files_arg}"
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_kernels_script.cmake
    DEPENDS ${ARGN} ${CMAKE_SOURCE_DIR}/cmake/embed_kernels_script.cmake
    COMMENT "Embedding OpenCL kernel sources"
    VERBATIM)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
