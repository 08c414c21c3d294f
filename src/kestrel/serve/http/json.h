// JSON helpers of the REST frontend: string escaping and number formatting for the responses
// Kestrel writes by hand (parsing is simdjson's, in http_api.cc).
#pragma once

#include <string>
#include <string_view>

namespace kestrel::serve {

// `s` as a quoted JSON string; bytes that are not valid UTF-8 are replaced by U+FFFD.
std::string json_string(std::string_view s);
// A JSON number; NaN and infinities (which JSON cannot hold) are written as null.
std::string json_number(double v);

}  // namespace kestrel::serve
