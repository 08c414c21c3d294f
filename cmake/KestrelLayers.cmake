# Layer targets with enforced include direction.
#
# Every folder under src/kestrel/ is one static library, declared with kestrel_layer(). A layer names
# the layers it may use (DEPS). Its sources compile against a private "view" include directory that
# contains only its own headers and those of its DEPS (transitively), as symbolic links into src/.
# An include of any other layer's header therefore fails with "file not found": the dependency
# direction of docs/DESIGN.md is checked by the compiler, not by review.
#
#   kestrel_layer(ir DIR ir DEPS base SOURCES graph.cc ...)
#   kestrel_layer_test(ir SOURCES graph_test.cc)        # a gtest binary that sees the ir view
#
# Layer names use '_' where the folder has '/': runtime_cpu is src/kestrel/runtime/cpu.

set(KESTREL_SRC ${PROJECT_SOURCE_DIR}/src/kestrel)
set(KESTREL_VIEWS ${PROJECT_BINARY_DIR}/layer_views)

# Links every header of one layer folder (not its sub-folders: those are other layers) into a view.
function(_kestrel_link_layer_headers view_dir layer_dir)
  file(GLOB headers CONFIGURE_DEPENDS
       ${KESTREL_SRC}/${layer_dir}/*.h ${KESTREL_SRC}/${layer_dir}/*.cuh)
  file(MAKE_DIRECTORY ${view_dir}/kestrel/${layer_dir})
  foreach(h IN LISTS headers)
    get_filename_component(name ${h} NAME)
    if(NOT EXISTS ${view_dir}/kestrel/${layer_dir}/${name})
      file(CREATE_LINK ${h} ${view_dir}/kestrel/${layer_dir}/${name} SYMBOLIC)
    endif()
  endforeach()
endfunction()

function(kestrel_layer name)
  cmake_parse_arguments(L "" "DIR" "DEPS;SOURCES;LIBS" ${ARGN})
  if(NOT L_DIR)
    set(L_DIR ${name})
  endif()
  list(TRANSFORM L_SOURCES PREPEND ${KESTREL_SRC}/${L_DIR}/)

  # Visible layers: this one plus the transitive closure of its DEPS.
  set(visible ${name})
  foreach(dep IN LISTS L_DEPS)
    get_property(dep_visible GLOBAL PROPERTY KESTREL_VISIBLE_${dep})
    if(NOT DEFINED dep_visible OR dep_visible STREQUAL "")
      message(FATAL_ERROR "layer ${name}: unknown dependency ${dep} (declare it first)")
    endif()
    list(APPEND visible ${dep_visible})
  endforeach()
  list(REMOVE_DUPLICATES visible)
  set_property(GLOBAL PROPERTY KESTREL_VISIBLE_${name} "${visible}")
  set_property(GLOBAL PROPERTY KESTREL_DIR_${name} "${L_DIR}")

  set(view ${KESTREL_VIEWS}/${name})
  file(REMOVE_RECURSE ${view})
  foreach(layer IN LISTS visible)
    get_property(layer_dir GLOBAL PROPERTY KESTREL_DIR_${layer})
    _kestrel_link_layer_headers(${view} ${layer_dir})
  endforeach()

  add_library(kestrel_${name} STATIC ${L_SOURCES})
  target_include_directories(kestrel_${name} PRIVATE ${view})
  foreach(dep IN LISTS L_DEPS)
    target_link_libraries(kestrel_${name} PUBLIC kestrel_${dep})
  endforeach()
  target_link_libraries(kestrel_${name} PUBLIC ${L_LIBS})
  set_property(GLOBAL PROPERTY KESTREL_VIEW_${name} ${view})
endfunction()

# The include directory that code depending on exactly this layer (and what it sees) compiles with.
function(kestrel_layer_view name out_var)
  get_property(view GLOBAL PROPERTY KESTREL_VIEW_${name})
  set(${out_var} ${view} PARENT_SCOPE)
endfunction()

# A test binary for one layer: sources live beside the layer's code and see only its view.
function(kestrel_layer_test layer)
  cmake_parse_arguments(T "" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_NAME)
    set(T_NAME ${layer}_test)
  endif()
  get_property(dir GLOBAL PROPERTY KESTREL_DIR_${layer})
  list(TRANSFORM T_SOURCES PREPEND ${KESTREL_SRC}/${dir}/)
  add_executable(${T_NAME} ${T_SOURCES})
  kestrel_layer_view(${layer} view)
  target_include_directories(${T_NAME} PRIVATE ${view})
  target_link_libraries(${T_NAME} PRIVATE kestrel_${layer} ${T_LIBS} GTest::gtest GTest::gtest_main)
  add_test(NAME ${T_NAME} COMMAND ${T_NAME})
  set_tests_properties(${T_NAME} PROPERTIES ENVIRONMENT "KESTREL_SHARED=${KESTREL_SHARED_DIR}"
                       LABELS "unit;${T_LABELS}")
endfunction()
