# The inference server: serve_core (repository, lifecycle, dynamic batcher, statistics, metrics),
# and its frontends serve_http (Boost.Beast) and serve_grpc, which only talk to serve_core.
# `kestrel serve` (cli/serve.cc) is added to the cli layer here.
find_package(simdjson REQUIRED)
find_package(Boost 1.74 REQUIRED)

# serve_core imports ONNX files on load, hence onnx next to engine and vision.
kestrel_layer(serve_core DIR serve/core DEPS engine onnx vision protocol
  SOURCES dynamic_batcher.cc gpu_metrics.cc inference_server.cc instance_placement.cc metrics.cc
          model_config.cc model_statistics.cc served_model.cc shared_memory.cc
  LIBS Threads::Threads Boost::headers ${CMAKE_DL_LIBS})
# Instance placement counts and names the GPUs through the CUDA backend when the build has it.
if(KESTREL_WITH_CUDA)
  target_compile_definitions(kestrel_serve_core PRIVATE KESTREL_WITH_CUDA)
endif()

if(KESTREL_TESTS)
  kestrel_layer_test(serve_core SOURCES serve_core_test.cc LABELS server)
  set_property(TEST serve_core_test APPEND PROPERTY ENVIRONMENT
               "KESTREL_SERVER_TEST_DATA=${PROJECT_SOURCE_DIR}/tests/server/data")
endif()

# KServe v2 over HTTP: Boost.Beast transport, simdjson for request bodies.
kestrel_layer(serve_http DIR serve/http DEPS serve_core
  SOURCES http_api.cc http_server.cc json.cc
  LIBS simdjson::simdjson Boost::headers)
if(KESTREL_TESTS)
  kestrel_layer_test(serve_http SOURCES http_server_test.cc LABELS server)
endif()

# KServe v2 over gRPC plus grpc.health.v1.
kestrel_layer(serve_grpc DIR serve/grpc DEPS serve_core protocol
  SOURCES grpc_frontend.cc)

list(APPEND CLI_DEPS serve_core serve_http serve_grpc)
list(APPEND CLI_SOURCES serve.cc)
