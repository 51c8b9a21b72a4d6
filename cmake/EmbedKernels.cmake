# Embeds every kernel source into the binary at build time (no Python needed), so an installed
# clquant runs anywhere; CLQ_KERNEL_DIR still points the runtime at a source folder instead.
# Paths come from this file's own folder and the current binary folder, so the project also
# builds as a subdirectory of another one.
set(CLQ_EMBED_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/embed_kernels_script.cmake)
function(clq_embed_kernels out_var root)
  set(out ${PROJECT_BINARY_DIR}/generated/kernels_embedded.cpp)
  # '|' separates the files: a ';' would split the command line in the shell.
  string(REPLACE ";" "|" files_arg "${ARGN}")
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DROOT=${root} -DOUT=${out} "-DFILES=${files_arg}"
            -P ${CLQ_EMBED_SCRIPT}
    DEPENDS ${ARGN} ${CLQ_EMBED_SCRIPT}
    COMMENT "Embedding OpenCL kernel sources"
    VERBATIM)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
