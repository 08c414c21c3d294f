# bench: `kestrel bench`, the load generator, its statistics and reports. It talks to servers over
# the wire only (DESIGN.md): base, plus the protocol layer for gRPC when that layer exists.
find_package(simdjson REQUIRED)
kestrel_layer(bench DEPS base protocol
  SOURCES accuracy.cc client.cc cold_start.cc grpc_client.cc http_client.cc inputs.cc
          kserve_json.cc load.cc report.cc shared_memory.cc stats.cc
  LIBS simdjson::simdjson Threads::Threads)
# --shared-memory cuda allocates the client's tensors in GPU memory (the CUDA runtime only: the
# bench still talks to the server over the wire).
if(KESTREL_WITH_CUDA)
  target_compile_definitions(kestrel_bench PRIVATE KESTREL_WITH_CUDA)
  target_link_libraries(kestrel_bench PRIVATE CUDA::cudart)
endif()

list(APPEND CLI_DEPS bench)
list(APPEND CLI_SOURCES bench.cc)

if(KESTREL_TESTS)
  kestrel_layer_test(bench SOURCES kserve_json_test.cc load_test.cc report_test.cc stats_test.cc
                    LABELS bench)
endif()
