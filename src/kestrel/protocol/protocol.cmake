# The protocol layer: Kestrel's copies of Triton's KServe v2 protos (grpc_service.proto,
# model_config.proto) and grpc.health.v1 (health.proto), compiled to C++ and gRPC stubs in the build
# tree, plus datatype tables. Used by the server (serve_core, serve_grpc) and by the bench client.
find_package(gRPC REQUIRED)
find_program(GRPC_CPP_PLUGIN grpc_cpp_plugin REQUIRED)

set(PROTOCOL_GEN_DIR ${KESTREL_VIEWS}/protocol_generated)
set(PROTOCOL_GEN_SOURCES)
set(PROTOCOL_GEN_HEADERS)
foreach(proto grpc_service model_config health)
  set(src ${KESTREL_SRC}/protocol/${proto}.proto)
  set(out ${PROTOCOL_GEN_DIR}/kestrel/protocol/${proto})
  add_custom_command(
    OUTPUT ${out}.pb.cc ${out}.pb.h ${out}.grpc.pb.cc ${out}.grpc.pb.h
    COMMAND ${CMAKE_COMMAND} -E make_directory ${PROTOCOL_GEN_DIR}
    COMMAND protobuf::protoc --cpp_out=${PROTOCOL_GEN_DIR} --grpc_out=${PROTOCOL_GEN_DIR}
            --plugin=protoc-gen-grpc=${GRPC_CPP_PLUGIN} -I ${PROJECT_SOURCE_DIR}/src ${src}
    DEPENDS ${src} protobuf::protoc
    COMMENT "Generating C++ and gRPC code from ${proto}.proto")
  list(APPEND PROTOCOL_GEN_SOURCES ${out}.pb.cc ${out}.grpc.pb.cc)
endforeach()

kestrel_layer(protocol DEPS base
  SOURCES datatypes.cc
  LIBS gRPC::grpc++ protobuf::libprotobuf)
target_sources(kestrel_protocol PRIVATE ${PROTOCOL_GEN_SOURCES})
# Layers that may use protocol see its generated headers too (the view only holds hand-written ones).
target_include_directories(kestrel_protocol PUBLIC ${PROTOCOL_GEN_DIR})
set_source_files_properties(${PROTOCOL_GEN_SOURCES} PROPERTIES COMPILE_OPTIONS -w)

if(KESTREL_TESTS)
  kestrel_layer_test(protocol SOURCES protocol_test.cc LABELS protocol)
endif()
