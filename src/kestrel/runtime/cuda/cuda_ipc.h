// GPU memory shared between processes (CUDA IPC), for the server's CUDA shared-memory extension:
// a client exports a cudaMalloc'ed block with cudaIpcGetMemHandle and sends the handle's 64 bytes;
// the server opens it here and reads inputs from it, or writes outputs into it, on the GPU.
//
// Plain C++ (no CUDA types), like cuda_backend.h.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "kestrel/base/status.h"

namespace kestrel::runtime {

// The size of a serialized cudaIpcMemHandle_t.
inline constexpr size_t kCudaIpcHandleBytes = 64;

// Opens the block that `handle` names, on CUDA device `device`, and checks that its first
// `byte_size` bytes lie inside the allocation the client exported (so that no later copy can
// reach past it). The returned pointer closes the handle when the last copy of it goes.
// INVALID_ARGUMENT for a handle of the wrong size, one that does not open (stale, from this
// process, from another machine), a device that does not exist or a byte_size larger than the
// allocation; FAILED_PRECONDITION when there is no GPU at all.
StatusOr<std::shared_ptr<void>> open_cuda_ipc_memory(std::span<const std::byte> handle, int device,
                                                     size_t byte_size);

// Copies `bytes` bytes between host and device memory in any direction (CUDA's unified
// addressing tells which), and waits for the copy, which waits for no other work on the GPU.
Status cuda_copy_bytes(void* dst, const void* src, size_t bytes);

}  // namespace kestrel::runtime
