// Kernel and Backend: the interface between the engine and the code that computes.
//
// A Backend (runtime/cpu, runtime/cuda) owns a device's memory and creates one Kernel per graph
// node from a KernelDef: the operator, its attributes, its element types, and the values of inputs
// that are constants (weights), so a kernel can pre-pack them once. The engine computes every
// output shape with the operator's shape rule before calling run() and allocates those outputs;
// only data-dependent outputs (left undefined) are allocated by the kernel itself.
//
// Thread safety: run() may be called concurrently from several execution contexts. Kernels keep
// per-call state on the stack and synchronize any cache they hold.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kestrel/base/attributes.h"
#include "kestrel/base/status.h"
#include "kestrel/base/tensor.h"
#include "kestrel/runtime/tuning.h"

namespace kestrel::runtime {

struct KernelDef {
  std::string op_type;
  std::string node_name;
  Attributes attrs;
  std::vector<DType> input_dtypes;  // kUndefined for an omitted optional input
  std::vector<DType> output_dtypes;
  std::vector<Tensor> constant_inputs;  // defined where the input is a constant
  // Where a kernel that measures candidates looks up and records its choices; may be null.
  TuningCache* tuning = nullptr;

  bool has_input(size_t i) const {
    return i < input_dtypes.size() && input_dtypes[i] != DType::kUndefined;
  }
  // "Conv '/model.0/conv/Conv'".
  std::string describe() const;
};

class KernelContext {
 public:
  using Allocator = std::function<StatusOr<Tensor>(DType, const Shape&)>;

  // `stream` is the backend's queue for this run (a cudaStream_t for CUDA; null on the CPU).
  KernelContext(std::span<const Tensor> inputs, std::span<Tensor> outputs, Allocator allocate,
                void* stream = nullptr)
      : inputs_(inputs), outputs_(outputs), allocate_(std::move(allocate)), stream_(stream) {}

  size_t num_inputs() const { return inputs_.size(); }
  bool has_input(size_t i) const { return i < inputs_.size() && inputs_[i].defined(); }
  const Tensor& input(size_t i) const { return inputs_[i]; }
  size_t num_outputs() const { return outputs_.size(); }
  Tensor& output(size_t i) { return outputs_[i]; }
  // For an output whose shape only the kernel knows.
  Status allocate_output(size_t i, DType dtype, const Shape& shape);
  void* stream() const { return stream_; }

 private:
  std::span<const Tensor> inputs_;
  std::span<Tensor> outputs_;
  Allocator allocate_;
  void* stream_;
};

class Kernel {
 public:
  virtual ~Kernel() = default;
  virtual Status run(KernelContext& ctx) = 0;
  // Called before the first run with these shapes (an engine planning an execution context for a
  // batch size), with tensors of the shapes that run will see, whose storage may be a
  // placeholder. A kernel that compiles or measures per shape may start that work in the
  // background here, so that the kernels of a forward pass prepare side by side instead of one
  // after another as the first run reaches them. A hint only: run() must work without it.
  virtual void prepare(std::span<const Tensor> inputs, std::span<const Tensor> outputs) {
    (void)inputs;
    (void)outputs;
  }
};

// A point in a stream's work, for timing it: a CUDA event, or the host clock on the CPU.
class TimingMark {
 public:
  virtual ~TimingMark() = default;
  // Milliseconds of device work between `earlier` (a mark of the same stream) and this mark;
  // waits until this mark is reached.
  virtual StatusOr<double> ms_since(const TimingMark& earlier) const = 0;
};

// A queue of work on a backend's device: a CUDA stream. The CPU runs work as it is issued, so its
// streams are empty handles.
class Stream {
 public:
  virtual ~Stream() = default;
  // What KernelContext::stream() carries for kernels running on this stream.
  virtual void* handle() const = 0;
  // Waits until everything queued on this stream is done.
  virtual Status synchronize() = 0;
  // A mark after the work queued so far. Default: the host clock now (right where work runs as
  // it is issued).
  virtual StatusOr<std::unique_ptr<TimingMark>> mark();
};

// Kernel launches recorded once and replayed later without the host issuing them again: a CUDA
// graph. Replays read and write the same device addresses as the recorded work did.
class Recording {
 public:
  virtual ~Recording() = default;
  virtual Status replay(Stream& stream) = 0;
};

// Kernels for operators that layers above the runtime define (vision's YoloNms, the NMS appended
// to detection engines): a backend offers a node to its own kernels first, then to the kernels
// registered here under its name ("cpu", "cuda"). This is how a plugin adds an operator without the
// runtime depending on it. Registering the same (backend, operator) again replaces the factory.
// Thread-safe.
using ExtensionKernelFactory = std::function<StatusOr<std::unique_ptr<Kernel>>(const KernelDef&)>;
void register_extension_kernel(std::string_view backend, std::string_view op_type,
                               ExtensionKernelFactory factory);
// The registered kernel for `def` on `backend`; UNIMPLEMENTED when none is registered.
StatusOr<std::unique_ptr<Kernel>> create_extension_kernel(std::string_view backend,
                                                          const KernelDef& def);

class Backend {
 public:
  virtual ~Backend() = default;

  // "cpu", "cuda".
  virtual std::string_view name() const = 0;
  virtual Device device() const = 0;
  // What an engine built here depends on: the device model and compute capability, library
  // versions. Engine files and timing caches record it and are refused elsewhere (see
  // engine/engine_file.h for which entries must match).
  virtual std::map<std::string, std::string> target() const = 0;
  // UNIMPLEMENTED, naming the node and what is missing, when the backend has no kernel for `def`.
  virtual StatusOr<std::unique_ptr<Kernel>> create_kernel(const KernelDef& def) = 0;
  // Memory on this backend's device; uninitialized.
  virtual StatusOr<Tensor> allocate(DType dtype, const Shape& shape) = 0;
  // Copies between host and this backend's device, or within either. REQUIRES: same dtype and
  // element count.
  virtual Status copy(const Tensor& src, Tensor& dst) = 0;
  // Waits for all work this backend queued.
  virtual Status synchronize() = 0;

  // Host memory the device copies to and from at full speed (pinned, for CUDA). Default: ordinary
  // host memory.
  virtual StatusOr<Tensor> allocate_host(DType dtype, const Shape& shape) {
    return Tensor::allocate(dtype, shape);
  }

  // A new queue for one execution context. Default: an empty handle (work runs at once).
  virtual StatusOr<std::unique_ptr<Stream>> create_stream();
  // copy(), queued on `stream`. Default: copy() (done when it returns).
  virtual Status copy_async(const Tensor& src, Tensor& dst, Stream& stream);
  // Records the work `work` queues on `stream` for replay. UNIMPLEMENTED where the backend cannot
  // record (the caller then simply runs the work each time).
  virtual StatusOr<std::unique_ptr<Recording>> record(Stream& stream,
                                                      const std::function<Status()>& work);
};

}  // namespace kestrel::runtime
