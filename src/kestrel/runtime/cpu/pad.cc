// Reference kernel of Pad, modes constant, reflect, edge and wrap.
//
// Each axis gets a table mapping an output coordinate to the input coordinate it copies, or -1 for
// the constant. Negative pads crop first and the other modes then pad the cropped tensor, as
// onnxruntime does. Reflect mirrors without repeating the edge, repeatedly when the pad is longer
// than the axis (numpy's 'reflect'); wrap is periodic; edge repeats the border element.
#include <cstring>

#include "kestrel/runtime/cpu/kernel_registry.h"
#include "kestrel/runtime/cpu/kernel_util.h"

namespace kestrel::runtime::cpu {
namespace {

enum class PadMode { kConstant, kReflect, kEdge, kWrap };

// Non-negative remainder.
int64_t positive_mod(int64_t a, int64_t m) {
  const int64_t r = a % m;
  return r < 0 ? r + m : r;
}

// For each output coordinate along one axis, the input coordinate it reads, or -1.
StatusOr<std::vector<int64_t>> axis_map(PadMode mode, int64_t dim, int64_t begin, int64_t end,
                                        int64_t out_dim) {
  const int64_t crop = begin < 0 ? -begin : 0;
  const int64_t kept = dim - crop - (end < 0 ? -end : 0);
  const int64_t lead = begin > 0 ? begin : 0;
  std::vector<int64_t> map(static_cast<size_t>(out_dim));
  for (int64_t o = 0; o < out_dim; ++o) {
    int64_t j = o - lead;  // coordinate in the cropped input
    if (j < 0 || j >= kept) {
      if (mode == PadMode::kConstant) {
        map[o] = -1;
        continue;
      }
      if (kept <= 0) return invalid_argument("cannot pad an empty axis in this mode");
      if (mode == PadMode::kEdge) {
        j = j < 0 ? 0 : kept - 1;
      } else if (mode == PadMode::kWrap) {
        j = positive_mod(j, kept);
      } else if (kept == 1) {
        j = 0;
      } else {
        const int64_t m = positive_mod(j, 2 * (kept - 1));
        j = m < kept ? m : 2 * (kept - 1) - m;
      }
    }
    map[o] = crop + j;
  }
  return map;
}

template <size_t N>
void pad(const Tensor& in, Tensor& out, const std::vector<std::vector<int64_t>>& maps,
         const std::byte* value) {
  const int64_t total = out.num_elements();
  const size_t rank = out.rank();
  const std::vector<int64_t> strides = contiguous_strides(in.shape());
  const auto* src = static_cast<const std::byte*>(in.raw_data());
  auto* dst = static_cast<std::byte*>(out.raw_data());
  std::vector<int64_t> index(rank, 0);
  for (int64_t i = 0; i < total; ++i) {
    int64_t offset = 0;
    bool inside = true;
    for (size_t d = 0; d < rank && inside; ++d) {
      const int64_t k = maps[d][index[d]];
      inside = k >= 0;
      offset += k * strides[d];
    }
    std::memcpy(dst + i * N, inside ? src + offset * N : value, N);
    for (size_t d = rank; d-- > 0;) {
      if (++index[d] < out.shape()[d]) break;
      index[d] = 0;
    }
  }
}

StatusOr<std::unique_ptr<Kernel>> create_pad(const KernelDef& def) {
  // Every element type moves as bytes, so the kernel needs no element type up front (it may be
  // unknown when the engine is built, downstream of a data-dependent shape).
  const std::string name = def.attrs.get_string("mode", "constant");
  const PadMode mode = name == "reflect" ? PadMode::kReflect
                       : name == "edge"  ? PadMode::kEdge
                       : name == "wrap"  ? PadMode::kWrap
                                         : PadMode::kConstant;
  return make_kernel([mode](KernelContext& ctx) -> Status {
    const Tensor& x = ctx.input(0);
    Tensor& out = ctx.output(0);
    const auto rank = static_cast<int64_t>(x.rank());
    KS_ASSIGN_OR_RETURN(std::vector<int64_t> pads, ctx.input(1).to_int64_vector());
    std::vector<int64_t> axes;
    if (ctx.has_input(3)) {
      KS_ASSIGN_OR_RETURN(axes, ctx.input(3).to_int64_vector());
    } else {
      for (int64_t d = 0; d < rank; ++d) axes.push_back(d);
    }
    std::vector<int64_t> begins(x.rank(), 0), ends(x.rank(), 0);
    for (size_t i = 0; i < axes.size(); ++i) {
      const auto a = static_cast<size_t>(axes[i] < 0 ? axes[i] + rank : axes[i]);
      begins[a] = pads[i];
      ends[a] = pads[i + axes.size()];
    }
    std::vector<std::vector<int64_t>> maps;
    for (size_t d = 0; d < x.rank(); ++d) {
      KS_ASSIGN_OR_RETURN(std::vector<int64_t> m,
                          axis_map(mode, x.shape()[d], begins[d], ends[d], out.shape()[d]));
      maps.push_back(std::move(m));
    }
    // The constant: input 2's bytes, or zero bytes (0, 0.0 or false in every element type).
    std::array<std::byte, 8> zero{};
    const std::byte* value = zero.data();
    if (mode == PadMode::kConstant && ctx.has_input(2)) {
      value = static_cast<const std::byte*>(ctx.input(2).raw_data());
    }
    switch (dtype_size(x.dtype())) {
      case 1:
        pad<1>(x, out, maps, value);
        break;
      case 2:
        pad<2>(x, out, maps, value);
        break;
      case 4:
        pad<4>(x, out, maps, value);
        break;
      case 8:
        pad<8>(x, out, maps, value);
        break;
      default:
        return unimplemented("element type {} is not supported here", x.dtype());
    }
    return Status();
  });
}

}  // namespace

std::vector<KernelEntry> pad_kernels() { return {KernelEntry{"Pad", create_pad}}; }

}  // namespace kestrel::runtime::cpu
