#include "kestrel/base/file.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

namespace kestrel {

StatusOr<std::string> read_file(const std::string& path, uint64_t max_bytes) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec || !std::filesystem::exists(status))
    return not_found("cannot open '{}': no such file", path);
  if (std::filesystem::is_directory(status)) return invalid_argument("'{}' is a directory", path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open '{}': {}", path, std::strerror(errno));
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) return data_loss("cannot determine the size of '{}'", path);
  if (static_cast<uint64_t>(size) > max_bytes) {
    return resource_exhausted("'{}' is {} bytes, over the limit of {}", path, size, max_bytes);
  }
  in.seekg(0, std::ios::beg);
  std::string data(static_cast<size_t>(size), '\0');
  if (size > 0 && !in.read(data.data(), size)) return data_loss("error reading '{}'", path);
  return data;
}

Status write_file(const std::string& path, std::string_view data) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return permission_denied("cannot write '{}': {}", tmp, std::strerror(errno));
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    if (!out) return data_loss("error writing '{}'", tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return permission_denied("cannot rename '{}' to '{}': {}", tmp, path, std::strerror(errno));
  }
  return Status();
}

}  // namespace kestrel
