#include "kestrel/runtime/kernel.h"

#include <fmt/format.h>

#include <chrono>
#include <mutex>

namespace kestrel::runtime {

std::string KernelDef::describe() const {
  return node_name.empty() ? op_type : fmt::format("{} '{}'", op_type, node_name);
}

Status KernelContext::allocate_output(size_t i, DType dtype, const Shape& shape) {
  KS_ASSIGN_OR_RETURN(outputs_[i], allocate_(dtype, shape));
  return Status();
}

namespace {

class HostClockMark final : public TimingMark {
 public:
  StatusOr<double> ms_since(const TimingMark& earlier) const override {
    const auto* e = dynamic_cast<const HostClockMark*>(&earlier);
    if (e == nullptr) return invalid_argument("timing marks of different streams");
    return std::chrono::duration<double, std::milli>(time_ - e->time_).count();
  }

 private:
  std::chrono::steady_clock::time_point time_ = std::chrono::steady_clock::now();
};

class ImmediateStream final : public Stream {
 public:
  void* handle() const override { return nullptr; }
  Status synchronize() override { return Status(); }
};

}  // namespace

namespace {

struct ExtensionRegistry {
  std::mutex mutex;
  std::map<std::pair<std::string, std::string>, ExtensionKernelFactory> factories;
};

ExtensionRegistry& extensions() {
  static ExtensionRegistry* registry = new ExtensionRegistry;  // never destroyed: used at exit
  return *registry;
}

}  // namespace

void register_extension_kernel(std::string_view backend, std::string_view op_type,
                               ExtensionKernelFactory factory) {
  ExtensionRegistry& r = extensions();
  std::lock_guard lock(r.mutex);
  r.factories[{std::string(backend), std::string(op_type)}] = std::move(factory);
}

StatusOr<std::unique_ptr<Kernel>> create_extension_kernel(std::string_view backend,
                                                          const KernelDef& def) {
  ExtensionKernelFactory factory;
  {
    ExtensionRegistry& r = extensions();
    std::lock_guard lock(r.mutex);
    auto it = r.factories.find({std::string(backend), def.op_type});
    if (it == r.factories.end()) {
      return unimplemented("the {} backend has no kernel for {}", backend, def.describe());
    }
    factory = it->second;
  }
  return factory(def);
}

StatusOr<std::unique_ptr<TimingMark>> Stream::mark() {
  return std::unique_ptr<TimingMark>(std::make_unique<HostClockMark>());
}

StatusOr<std::unique_ptr<Stream>> Backend::create_stream() {
  return std::unique_ptr<Stream>(std::make_unique<ImmediateStream>());
}

Status Backend::copy_async(const Tensor& src, Tensor& dst, Stream&) { return copy(src, dst); }

StatusOr<std::unique_ptr<Recording>> Backend::record(Stream&, const std::function<Status()>&) {
  return unimplemented("the {} backend cannot record work for replay", name());
}

}  // namespace kestrel::runtime
