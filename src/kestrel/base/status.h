// Status and StatusOr<T>: how every Kestrel function reports failure.
//
// Errors are values. A function that can fail returns Status (or StatusOr<T> when it also produces
// a value); no exception crosses a module boundary. Status codes mean the same as gRPC's codes (and
// have the same numbers), so the server can forward them unchanged, and http_status() gives the
// HTTP status a KServe v2 frontend answers with.
//
// Both types are [[nodiscard]]: ignoring a returned error is a compile-time warning (an error under
// -Werror). Use the macros at the bottom to propagate errors:
//
//   KS_RETURN_IF_ERROR(graph.verify());
//   KS_ASSIGN_OR_RETURN(Tensor t, read_npy(path));
//
// Thread safety: both are values; distinct objects may be used from distinct threads freely.
#pragma once

#include <fmt/format.h>

#include <cassert>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>

namespace kestrel {

// The numbers are gRPC's (grpc/status.h), on purpose.
enum class StatusCode : int {
  kOk = 0,
  kCancelled = 1,
  kUnknown = 2,
  kInvalidArgument = 3,
  kDeadlineExceeded = 4,
  kNotFound = 5,
  kAlreadyExists = 6,
  kPermissionDenied = 7,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kAborted = 10,
  kOutOfRange = 11,
  kUnimplemented = 12,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
  kUnauthenticated = 16,
};

// "INVALID_ARGUMENT", as gRPC spells it.
std::string_view status_code_name(StatusCode code);

// The HTTP status a REST frontend answers with for this code (e.g. kNotFound -> 404).
int http_status(StatusCode code);

class [[nodiscard]] Status {
 public:
  // OK.
  Status() = default;
  // REQUIRES: code != kOk or message is empty.
  Status(StatusCode code, std::string message);

  static Status ok_status() { return Status(); }

  bool ok() const { return rep_ == nullptr; }
  StatusCode code() const { return rep_ ? rep_->code : StatusCode::kOk; }
  // The message without the code name; empty for OK.
  std::string_view message() const { return rep_ ? std::string_view(rep_->message) : ""; }

  // "NOT_FOUND: model 'x' is not in the repository".
  std::string to_string() const;

  // Returns a copy whose message is prefixed with `context`: "context: message". OK stays OK.
  Status with_context(std::string_view context) const;

  // Explicitly drops an error that the caller has decided not to handle.
  void ignore_error() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code() == b.code() && a.message() == b.message();
  }

 private:
  struct Rep {
    StatusCode code;
    std::string message;
  };
  // Null for OK, so that returning OK costs nothing. Shared because Status is copied far more
  // often than it is created; the Rep is immutable.
  std::shared_ptr<const Rep> rep_;
};

std::ostream& operator<<(std::ostream& os, const Status& status);

// Constructors for each error code, with fmt-style formatting:
//   return invalid_argument("input '{}' has rank {}, expected 4", name, rank);
#define KESTREL_DEFINE_STATUS_FACTORY(fn, code)                                        \
  template <typename... Args>                                                          \
  Status fn(fmt::format_string<Args...> format, Args&&... args) {                      \
    return Status(StatusCode::code, fmt::format(format, std::forward<Args>(args)...)); \
  }
KESTREL_DEFINE_STATUS_FACTORY(cancelled_error, kCancelled)
KESTREL_DEFINE_STATUS_FACTORY(unknown_error, kUnknown)
KESTREL_DEFINE_STATUS_FACTORY(invalid_argument, kInvalidArgument)
KESTREL_DEFINE_STATUS_FACTORY(deadline_exceeded, kDeadlineExceeded)
KESTREL_DEFINE_STATUS_FACTORY(not_found, kNotFound)
KESTREL_DEFINE_STATUS_FACTORY(already_exists, kAlreadyExists)
KESTREL_DEFINE_STATUS_FACTORY(permission_denied, kPermissionDenied)
KESTREL_DEFINE_STATUS_FACTORY(resource_exhausted, kResourceExhausted)
KESTREL_DEFINE_STATUS_FACTORY(failed_precondition, kFailedPrecondition)
KESTREL_DEFINE_STATUS_FACTORY(aborted_error, kAborted)
KESTREL_DEFINE_STATUS_FACTORY(out_of_range, kOutOfRange)
KESTREL_DEFINE_STATUS_FACTORY(unimplemented, kUnimplemented)
KESTREL_DEFINE_STATUS_FACTORY(internal_error, kInternal)
KESTREL_DEFINE_STATUS_FACTORY(unavailable, kUnavailable)
KESTREL_DEFINE_STATUS_FACTORY(data_loss, kDataLoss)
KESTREL_DEFINE_STATUS_FACTORY(unauthenticated, kUnauthenticated)
#undef KESTREL_DEFINE_STATUS_FACTORY

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  // REQUIRES: !status.ok(). An OK status without a value is a programming error; it is turned into
  // an INTERNAL error rather than a crash.
  StatusOr(Status status) : status_(std::move(status)) {  // NOLINT: implicit on purpose
    if (status_.ok()) status_ = Status(StatusCode::kInternal, "StatusOr built from OK status");
  }
  StatusOr(T value) : value_(std::move(value)) {}  // NOLINT: implicit on purpose
  template <typename U>
  requires std::is_convertible_v<U&&, T> &&
      (!std::is_same_v<std::decay_t<U>, Status>)&&(!std::is_same_v<std::decay_t<U>, T>)
          StatusOr(U&& value)
      : value_(T(std::forward<U>(value))) {}  // NOLINT

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }

  // REQUIRES: ok().
  T& value() & {
    assert(ok());
    return *value_;
  }
  const T& value() const& {
    assert(ok());
    return *value_;
  }
  T&& value() && {
    assert(ok());
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace kestrel

#define KS_STATUS_CONCAT_INNER(a, b) a##b
#define KS_STATUS_CONCAT(a, b) KS_STATUS_CONCAT_INNER(a, b)

// Returns from the enclosing function if `expr` (a Status) is not OK.
#define KS_RETURN_IF_ERROR(expr)             \
  do {                                       \
    ::kestrel::Status ks_status_ = (expr);   \
    if (!ks_status_.ok()) return ks_status_; \
  } while (0)

// `lhs = value of expr` (a StatusOr), or returns its error from the enclosing function. It expands
// to several statements: inside an if or a loop, use braces.
#define KS_ASSIGN_OR_RETURN(lhs, expr) \
  KS_ASSIGN_OR_RETURN_IMPL(KS_STATUS_CONCAT(ks_statusor_, __LINE__), lhs, expr)
#define KS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
