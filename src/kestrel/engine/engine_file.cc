#include "kestrel/engine/engine_file.h"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <zlib.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <optional>
#include <string_view>

#include "kestrel/base/file.h"
#include "kestrel/base/logging.h"
#include "kestrel/engine/kplan.pb.h"
#include "kestrel/runtime/tuning.h"

namespace kestrel::engine {
namespace {

constexpr char kMagic[8] = {'K', 'E', 'S', 'T', 'R', 'E', 'L', 'P'};
constexpr size_t kPreamble = 64;
constexpr size_t kAlign = 64;
// The header holds the graph structure only (weights are in their own section): protobuf's own
// 2 GB message limit is far away, but refuse absurd sizes before allocating.
constexpr uint64_t kMaxHeader = uint64_t{1} << 30;

size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

template <typename T>
void put(std::string& out, size_t at, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}
template <typename T>
T get(std::string_view in, size_t at) {
  T v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {
    v |= static_cast<T>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  }
  return v;
}

uint32_t crc32_of(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed large sections in pieces.
  for (size_t at = 0; at < bytes.size(); at += size_t{1} << 30) {
    const size_t n = std::min(bytes.size() - at, size_t{1} << 30);
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + at), static_cast<uInt>(n));
  }
  return static_cast<uint32_t>(crc);
}

// Writing: constants go to the weight section, the graph into the header.
class Writer {
 public:
  kplan::TensorData add_tensor(const Tensor& t) {
    kplan::TensorData d;
    d.set_dtype(static_cast<int32_t>(t.dtype()));
    for (int64_t dim : t.shape()) d.add_dims(dim);
    weights_.resize(align_up(weights_.size()), '\0');
    d.set_offset(weights_.size());
    d.set_size(t.nbytes());
    weights_.append(static_cast<const char*>(t.raw_data()), t.nbytes());
    return d;
  }
  std::string& weights() { return weights_; }

 private:
  std::string weights_;
};

void write_type(const ir::TensorType& type, kplan::TensorType* out) {
  out->set_dtype(static_cast<int32_t>(type.dtype));
  out->set_has_rank(type.shape.has_rank());
  if (!type.shape.has_rank()) return;
  for (const ir::SymDim& d : type.shape.dims()) {
    kplan::Dim* dim = out->add_dims();
    if (d.is_known()) {
      dim->set_size(d.value());
    } else if (d.is_symbolic()) {
      dim->mutable_symbol()->set_name(d.symbol_name());
      dim->mutable_symbol()->set_coef(d.coef());
      dim->mutable_symbol()->set_offset(d.offset());
    }
  }
}

Status write_graph(const ir::Graph& graph, Writer& w, kplan::Graph* out) {
  std::unordered_map<const ir::Value*, int64_t> index;
  for (const ir::Value* v : graph.values()) {
    index[v] = out->values_size();
    kplan::Value* pv = out->add_values();
    pv->set_name(v->name());
    write_type(v->type(), pv->mutable_type());
    if (v->has_constant()) {
      if (!v->constant().device().is_cpu()) {
        return internal_error("constant '{}' is not in host memory", v->name());
      }
      *pv->mutable_constant() = w.add_tensor(v->constant());
    }
  }
  for (const ir::Node* node : graph.nodes()) {
    kplan::Node* pn = out->add_nodes();
    pn->set_op_type(node->op_type());
    pn->set_name(node->name());
    pn->set_domain(node->domain());
    for (const ir::Value* in : node->inputs()) pn->add_inputs(in ? index.at(in) + 1 : 0);
    for (const ir::Value* o : node->outputs()) pn->add_outputs(index.at(o) + 1);
    for (const auto& [name, value] : node->attrs().all()) {
      kplan::Attribute* a = pn->add_attributes();
      a->set_name(name);
      if (auto* i = std::get_if<int64_t>(&value)) {
        a->set_i(*i);
      } else if (auto* f = std::get_if<float>(&value)) {
        a->set_f(*f);
      } else if (auto* s = std::get_if<std::string>(&value)) {
        a->set_s(*s);
      } else if (auto* t = std::get_if<Tensor>(&value)) {
        *a->mutable_t() = w.add_tensor(*t);
      } else if (auto* is = std::get_if<std::vector<int64_t>>(&value)) {
        for (int64_t x : *is) a->mutable_ints()->add_values(x);
        a->mutable_ints();  // present even when empty
      } else if (auto* fs = std::get_if<std::vector<float>>(&value)) {
        for (float x : *fs) a->mutable_floats()->add_values(x);
        a->mutable_floats();
      } else if (auto* ss = std::get_if<std::vector<std::string>>(&value)) {
        for (const std::string& x : *ss) a->mutable_strings()->add_values(x);
        a->mutable_strings();
      }
    }
  }
  for (const ir::Value* v : graph.inputs()) out->add_inputs(index.at(v) + 1);
  for (const ir::Value* v : graph.outputs()) out->add_outputs(index.at(v) + 1);
  for (const auto& [k, v] : graph.metadata) (*out->mutable_metadata())[k] = v;
  out->set_opset_version(graph.opset_version);
  out->set_name(graph.graph_name);
  out->set_producer(graph.producer_name);
  return Status();
}

// Reading: tensors are views of the file's bytes (kept alive by `file`), checked against the
// weight section's bounds.
class Reader {
 public:
  Reader(std::shared_ptr<const std::string> file, size_t weights_at, size_t weights_size)
      : file_(std::move(file)), weights_at_(weights_at), weights_size_(weights_size) {}

  StatusOr<Tensor> tensor(const kplan::TensorData& d) const {
    if (!is_valid_dtype(d.dtype()) || dtype_size(static_cast<DType>(d.dtype())) == 0) {
      return data_loss("a tensor has an unknown element type {}", d.dtype());
    }
    const DType dtype = static_cast<DType>(d.dtype());
    std::vector<int64_t> dims(d.dims().begin(), d.dims().end());
    KS_ASSIGN_OR_RETURN(int64_t n, checked_num_elements(dims));
    if (static_cast<uint64_t>(n) * dtype_size(dtype) != d.size() || d.offset() % kAlign != 0 ||
        d.offset() > weights_size_ || d.size() > weights_size_ - d.offset()) {
      return data_loss("a tensor lies outside the weight section or disagrees with its shape");
    }
    void* data = const_cast<char*>(file_->data() + weights_at_ + d.offset());
    return Tensor::wrap(dtype, Shape(dims), std::shared_ptr<void>(file_, data), data);
  }

 private:
  std::shared_ptr<const std::string> file_;
  size_t weights_at_, weights_size_;
};

StatusOr<ir::TensorType> read_type(const kplan::TensorType& t) {
  ir::TensorType type;
  if (t.dtype() != 0 && !is_valid_dtype(t.dtype())) {
    return data_loss("a value has an unknown element type {}", t.dtype());
  }
  type.dtype = static_cast<DType>(t.dtype());
  if (!t.has_rank()) return type;
  std::vector<ir::SymDim> dims;
  for (const kplan::Dim& d : t.dims()) {
    if (d.has_symbol()) {
      dims.push_back(ir::SymDim::symbol(d.symbol().name(), d.symbol().coef(), d.symbol().offset()));
    } else if (d.kind_case() == kplan::Dim::kSize) {
      dims.push_back(ir::SymDim(d.size()));
    } else {
      dims.push_back(ir::SymDim::unknown());
    }
  }
  type.shape = ir::SymShape(std::move(dims));
  return type;
}

StatusOr<std::unique_ptr<ir::Graph>> read_graph(const kplan::Graph& g, const Reader& r) {
  auto graph = std::make_unique<ir::Graph>();
  const int64_t n = g.values_size();
  std::vector<ir::Value*> values(static_cast<size_t>(n), nullptr);
  auto value_at = [&](int64_t ref) -> StatusOr<ir::Value*> {
    if (ref < 1 || ref > n) return data_loss("a value reference is out of range");
    return values[static_cast<size_t>(ref - 1)];
  };
  std::vector<bool> is_input(static_cast<size_t>(n), false);
  for (int64_t ref : g.inputs()) {
    if (ref < 1 || ref > n) return data_loss("a graph input reference is out of range");
    is_input[static_cast<size_t>(ref - 1)] = true;
  }
  auto unique = [&](const std::string& name) -> Status {
    if (graph->find_value(name) != nullptr) return data_loss("value '{}' appears twice", name);
    return Status();
  };
  // Inputs first, in their order (Graph::add_input keeps the call order).
  for (int64_t ref : g.inputs()) {
    const kplan::Value& pv = g.values(static_cast<int>(ref - 1));
    KS_RETURN_IF_ERROR(unique(pv.name()));
    KS_ASSIGN_OR_RETURN(ir::TensorType type, read_type(pv.type()));
    values[static_cast<size_t>(ref - 1)] = graph->add_input(pv.name(), std::move(type));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (is_input[static_cast<size_t>(i)]) continue;
    const kplan::Value& pv = g.values(static_cast<int>(i));
    KS_RETURN_IF_ERROR(unique(pv.name()));
    if (pv.has_constant()) {
      KS_ASSIGN_OR_RETURN(Tensor t, r.tensor(pv.constant()));
      values[static_cast<size_t>(i)] = graph->add_constant(pv.name(), std::move(t));
    } else {
      values[static_cast<size_t>(i)] = graph->add_value(pv.name());
    }
    KS_ASSIGN_OR_RETURN(ir::TensorType type, read_type(pv.type()));
    values[static_cast<size_t>(i)]->set_type(std::move(type));
  }
  for (const kplan::Node& pn : g.nodes()) {
    std::vector<ir::Value*> ins, outs;
    for (int64_t ref : pn.inputs()) {
      if (ref == 0) {
        ins.push_back(nullptr);
      } else {
        KS_ASSIGN_OR_RETURN(ir::Value * v, value_at(ref));
        ins.push_back(v);
      }
    }
    for (int64_t ref : pn.outputs()) {
      KS_ASSIGN_OR_RETURN(ir::Value * v, value_at(ref));
      if (v->producer() != nullptr || v->has_constant() || v->is_graph_input()) {
        return data_loss("value '{}' is computed twice", v->name());
      }
      outs.push_back(v);
    }
    Attributes attrs;
    for (const kplan::Attribute& a : pn.attributes()) {
      switch (a.value_case()) {
        case kplan::Attribute::kI:
          attrs.set(a.name(), a.i());
          break;
        case kplan::Attribute::kF:
          attrs.set(a.name(), a.f());
          break;
        case kplan::Attribute::kS:
          attrs.set(a.name(), a.s());
          break;
        case kplan::Attribute::kT: {
          KS_ASSIGN_OR_RETURN(Tensor t, r.tensor(a.t()));
          attrs.set(a.name(), std::move(t));
          break;
        }
        case kplan::Attribute::kInts:
          attrs.set(a.name(),
                    std::vector<int64_t>(a.ints().values().begin(), a.ints().values().end()));
          break;
        case kplan::Attribute::kFloats:
          attrs.set(a.name(),
                    std::vector<float>(a.floats().values().begin(), a.floats().values().end()));
          break;
        case kplan::Attribute::kStrings:
          attrs.set(a.name(), std::vector<std::string>(a.strings().values().begin(),
                                                       a.strings().values().end()));
          break;
        default:
          return data_loss("attribute '{}' of node '{}' has no value", a.name(), pn.name());
      }
    }
    graph->add_node(pn.op_type(), std::move(ins), std::move(outs), std::move(attrs), pn.name(),
                    pn.domain());
  }
  for (int64_t ref : g.outputs()) {
    KS_ASSIGN_OR_RETURN(ir::Value * v, value_at(ref));
    graph->add_output(v);
  }
  for (const auto& [k, v] : g.metadata()) graph->metadata[k] = v;
  graph->opset_version = g.opset_version();
  graph->graph_name = g.name();
  graph->producer_name = g.producer();
  return graph;
}

EngineFileInfo info_of(const kplan::Header& h, uint32_t version) {
  EngineFileInfo info;
  info.format_version = version;
  info.kestrel_version = h.kestrel_version();
  info.model_sha256 = h.model_sha256();
  info.model_name = h.model_name();
  info.precision = h.precision();
  info.layout = h.layout();
  info.max_batch = h.max_batch();
  info.backend = h.backend();
  info.target = {h.target().begin(), h.target().end()};
  info.tuning = {h.tuning().begin(), h.tuning().end()};
  info.tuning.insert(h.compiled().begin(), h.compiled().end());
  info.created_unix = h.created_unix();
  return info;
}

struct ParsedFile {
  std::shared_ptr<const std::string> bytes;
  kplan::Header header;
  uint32_t version = 0;
  size_t weights_at = 0, weights_size = 0;
};

StatusOr<ParsedFile> parse_file(const std::string& path) {
  ParsedFile p;
  KS_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  p.bytes = std::make_shared<const std::string>(std::move(bytes));
  std::string_view f = *p.bytes;
  if (f.size() < kPreamble || std::memcmp(f.data(), kMagic, sizeof(kMagic)) != 0) {
    return invalid_argument("{} is not a Kestrel engine file (no KESTRELP magic)", path);
  }
  p.version = get<uint32_t>(f, 8);
  if (p.version != kEngineFileVersion) {
    return failed_precondition(
        "{} is engine file format version {}; this Kestrel reads version {}: rebuild the engine",
        path, p.version, kEngineFileVersion);
  }
  const uint64_t header_size = get<uint64_t>(f, 16);
  const uint64_t weights_size = get<uint64_t>(f, 24);
  const uint64_t body = f.size() - kPreamble;
  if (header_size > kMaxHeader || header_size > body || align_up(header_size) > body ||
      weights_size != body - align_up(header_size)) {
    return data_loss("{} is truncated or damaged: its sections do not add up to its size", path);
  }
  if (crc32_of(f.substr(kPreamble)) != get<uint32_t>(f, 32)) {
    return data_loss("{} is damaged: its checksum does not match", path);
  }
  if (!p.header.ParseFromArray(f.data() + kPreamble, static_cast<int>(header_size))) {
    return data_loss("{} is damaged: its header does not parse", path);
  }
  p.weights_at = kPreamble + align_up(header_size);
  p.weights_size = weights_size;
  return p;
}

// The target entries that must match for an engine to run correctly and fast: the kernels'
// choices were measured on this GPU model with these libraries.
Status check_target(const std::string& path, const std::map<std::string, std::string>& file,
                    const std::map<std::string, std::string>& here) {
  auto value = [](const std::map<std::string, std::string>& m, const std::string& k) {
    auto it = m.find(k);
    return it == m.end() ? std::string("(none)") : it->second;
  };
  for (const char* key : {"backend", "gpu", "compute_capability", "cudnn"}) {
    if (value(file, key) != value(here, key)) {
      return failed_precondition(
          "{} was built for {} '{}' but this machine has '{}': rebuild the engine here", path, key,
          value(file, key), value(here, key));
    }
  }
  // CUDA runtime: the major version (13000 -> 13) must agree.
  auto major = [&](const std::map<std::string, std::string>& m) {
    const std::string v = value(m, "cuda_runtime");
    return v.size() > 3 ? v.substr(0, v.size() - 3) : v;
  };
  if (major(file) != major(here)) {
    return failed_precondition(
        "{} was built with CUDA runtime {} but this machine has {}: rebuild the engine here", path,
        value(file, "cuda_runtime"), value(here, "cuda_runtime"));
  }
  return Status();
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// nullopt when `text` is not base64 (wrong length, a character outside the alphabet).
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0 || text.size() > (size_t{1} << 30)) return std::nullopt;
  // OpenSSL skips whitespace and reads '=' anywhere as zero bits: allow only the alphabet, and
  // '=' as the last one or two characters.
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const bool alphabet = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                          (c >= '0' && c <= '9') || c == '+' || c == '/';
    const bool padding =
        c == '=' && i + 2 >= text.size() && (i + 1 == text.size() || text[i + 1] == '=');
    if (!alphabet && !padding) return std::nullopt;
  }
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) return std::nullopt;
  // EVP_DecodeBlock counts the padding as zero bytes.
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

}  // namespace

StatusOr<std::map<std::string, std::string>> read_timing_cache(
    const std::string& path, const std::map<std::string, std::string>& target) {
  KS_ASSIGN_OR_RETURN(std::string text, read_file(path, uint64_t{1} << 30));
  std::map<std::string, std::string> file_target, choices;
  size_t at = 0;
  int line_number = 0;
  while (at < text.size()) {
    const size_t end = std::min(text.find('\n', at), text.size());
    const std::string_view line = std::string_view(text).substr(at, end - at);
    at = end + 1;
    ++line_number;
    if (line_number == 1) {
      if (line != "kestrel-timing-cache 1" && line != "kestrel-timing-cache 2") {
        return data_loss("{} is not a Kestrel timing cache (version 1 or 2)", path);
      }
    } else if (line.starts_with("target ")) {
      const size_t eq = line.find('=');
      if (eq == std::string_view::npos)
        return data_loss("{}:{}: malformed target", path, line_number);
      file_target[std::string(line.substr(7, eq - 7))] = std::string(line.substr(eq + 1));
    } else if (line.starts_with("choice ")) {
      const size_t tab = line.find('\t');
      if (tab == std::string_view::npos)
        return data_loss("{}:{}: malformed choice", path, line_number);
      choices[std::string(line.substr(7, tab - 7))] = std::string(line.substr(tab + 1));
    } else if (line.starts_with(runtime::kSerializedPlanPrefix)) {
      const size_t tab = line.find('\t');
      std::optional<std::string> bytes;
      if (tab != std::string_view::npos) bytes = base64_decode(line.substr(tab + 1));
      if (!bytes) return data_loss("{}:{}: malformed compiled kernel", path, line_number);
      choices[std::string(line.substr(0, tab))] = std::move(*bytes);
    } else if (!line.empty()) {
      return data_loss("{}:{}: unexpected line", path, line_number);
    }
  }
  if (line_number == 0) return data_loss("{} is empty", path);
  KS_RETURN_IF_ERROR(check_target(path, file_target, target));
  return choices;
}

Status write_timing_cache(const std::string& path, const Engine& engine) {
  std::string text = "kestrel-timing-cache 2\n";
  for (const auto& [k, v] : engine.target()) text += fmt::format("target {}={}\n", k, v);
  for (const auto& [k, v] : engine.tuning_entries()) {
    const bool compiled = k.starts_with(runtime::kSerializedPlanPrefix);
    if (k.find_first_of("\t\n") != std::string::npos ||
        (!compiled && v.find('\n') != std::string::npos)) {
      return internal_error("tuning key '{}' cannot be written to a timing cache", k);
    }
    // A compiled kernel is binary: base64, on a line of its own that starts with its key.
    text += compiled ? fmt::format("{}\t{}\n", k, base64_encode(v))
                     : fmt::format("choice {}\t{}\n", k, v);
  }
  return write_file(path, text);
}

StatusOr<std::string> sha256_of_file(const std::string& path) {
  KS_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &size, EVP_sha256(), nullptr) != 1) {
    return internal_error("SHA-256 of {} failed", path);
  }
  std::string hex;
  for (unsigned int i = 0; i < size; ++i) hex += fmt::format("{:02x}", digest[i]);
  return hex;
}

Status save_engine_file(const std::string& path, const Engine& engine, EngineFileInfo info) {
  kplan::Header h;
  Writer w;
  KS_RETURN_IF_ERROR(write_graph(engine.graph(), w, h.mutable_graph()));
  const std::map<std::string, std::string> target = engine.target();
  h.set_kestrel_version(KESTREL_VERSION);
  h.set_model_sha256(info.model_sha256);
  h.set_model_name(info.model_name);
  h.set_precision(info.precision);
  h.set_layout(info.layout);
  h.set_max_batch(info.max_batch);
  h.set_backend(target.count("backend") ? target.at("backend") : "");
  for (const auto& [k, v] : target) (*h.mutable_target())[k] = v;
  for (const auto& [k, v] : engine.tuning_entries()) {
    // Compiled kernels only where this engine's kernels use them (a timing cache may bring
    // those of other models).
    if (k.starts_with(runtime::kSerializedPlanPrefix)) {
      if (engine.tuning_touched(k)) (*h.mutable_compiled())[k] = v;
    } else
      (*h.mutable_tuning())[k] = v;
  }
  h.set_created_unix(std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
  std::string header;
  if (!h.SerializeToString(&header)) return internal_error("the engine header does not serialize");
  if (header.size() > kMaxHeader) return resource_exhausted("the engine's graph is too large");

  std::string out(kPreamble, '\0');
  std::memcpy(out.data(), kMagic, sizeof(kMagic));
  put<uint32_t>(out, 8, kEngineFileVersion);
  put<uint64_t>(out, 16, header.size());
  put<uint64_t>(out, 24, w.weights().size());
  out += header;
  out.resize(kPreamble + align_up(header.size()), '\0');
  out += w.weights();
  put<uint32_t>(out, 32, crc32_of(std::string_view(out).substr(kPreamble)));
  return write_file(path, out);
}

StatusOr<EngineFileInfo> read_engine_file_info(const std::string& path) {
  KS_ASSIGN_OR_RETURN(ParsedFile p, parse_file(path));
  return info_of(p.header, p.version);
}

StatusOr<std::unique_ptr<Engine>> load_engine_file(const std::string& path,
                                                   const LoadOptions& options,
                                                   EngineFileInfo* info) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  KS_ASSIGN_OR_RETURN(ParsedFile p, parse_file(path));
  const double parsed_ms = ms_since(start);
  EngineFileInfo file_info = info_of(p.header, p.version);
  if (!options.expect_model.empty()) {
    std::string hash = options.expect_model_sha256;
    if (hash.empty()) {
      KS_ASSIGN_OR_RETURN(hash, sha256_of_file(options.expect_model));
    }
    if (hash != file_info.model_sha256) {
      return failed_precondition("{} was built from another version of {} (hash {}, now {})", path,
                                 options.expect_model, file_info.model_sha256.substr(0, 12),
                                 hash.substr(0, 12));
    }
  }
  const Reader reader(p.bytes, p.weights_at, p.weights_size);
  KS_ASSIGN_OR_RETURN(std::unique_ptr<ir::Graph> graph, read_graph(p.header.graph(), reader));
  EngineOptions engine_options = options.engine;
  engine_options.backend = file_info.backend;
  engine_options.tuning = file_info.tuning;
  const Clock::time_point create_start = Clock::now();
  const double graph_ms = std::chrono::duration<double, std::milli>(create_start - start).count();
  StatusOr<std::unique_ptr<Engine>> created = Engine::create(std::move(graph), engine_options);
  if (!created.ok()) return created.status().with_context(path);
  std::unique_ptr<Engine> engine = std::move(created).value();
  KS_RETURN_IF_ERROR(check_target(path, file_info.target, engine->target()));
  log::debug(
      "{}: {} bytes read and checked in {:.1f} ms, graph ready at {:.1f} ms, engine created "
      "in {:.1f} ms (kernels bound, weights placed, contexts planned)",
      path, p.bytes->size(), parsed_ms, graph_ms, ms_since(create_start));
  if (info != nullptr) *info = std::move(file_info);
  return engine;
}

}  // namespace kestrel::engine
