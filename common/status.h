// Status and Result<T>: the return types of every operation that can fail for
// reasons outside the program (bad config, bad file, I/O error, peer timeout).
// Broken invariants use LS_CHECK (check.h) instead. Value types; thread-compatible.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace lockstep {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,    // a config, flag or argument is wrong
  kNotFound,           // a file or entity does not exist
  kDataLoss,           // a file exists but is truncated or corrupt
  kIoError,            // the operating system refused a read or write
  kDeadlineExceeded,   // a peer did not answer in time
  kFailedPrecondition, // the system is not in the state the call needs
  kUnavailable,        // a resource (device, peer) cannot be used
  kAborted,            // cancelled by a signal or another rank's failure
  kInternal,           // a bug surfaced as an error instead of an abort
  kCheckpoint,         // a checkpoint could not be saved, found or loaded (exit code 4)
  kPreempted,          // stopped by a signal after saving its state (exit code 75: requeue)
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "INVALID_ARGUMENT: message" or "OK".
  std::string ToString() const;
  // Returns a copy whose message is "context: message" (no-op when OK).
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status DataLossError(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status DeadlineExceededError(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
inline Status FailedPreconditionError(std::string m) { return {StatusCode::kFailedPrecondition, std::move(m)}; }
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status AbortedError(std::string m) { return {StatusCode::kAborted, std::move(m)}; }
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
inline Status CheckpointError(std::string m) { return {StatusCode::kCheckpoint, std::move(m)}; }
inline Status PreemptedError(std::string m) { return {StatusCode::kPreempted, std::move(m)}; }

// Either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit by design
    if (status_.ok()) status_ = InternalError("Result constructed from an OK status without a value");
  }

  bool ok() const { return value_.has_value(); }
  const Status& status() const { return status_; }
  T& value() & { return *value_; }
  const T& value() const& { return *value_; }
  T&& value() && { return std::move(*value_); }
  T& operator*() & { return *value_; }
  const T& operator*() const& { return *value_; }
  T* operator->() { return &*value_; }
  const T* operator->() const { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

}  // namespace lockstep

#define LS_STATUS_CONCAT_INNER(a, b) a##b
#define LS_STATUS_CONCAT(a, b) LS_STATUS_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function when `expr` is not OK.
#define LS_RETURN_IF_ERROR(expr)                         \
  do {                                                   \
    ::lockstep::Status ls_status_ = (expr);              \
    if (!ls_status_.ok()) return ls_status_;             \
  } while (0)

// `LS_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from a Result or returns its Status.
#define LS_ASSIGN_OR_RETURN(lhs, expr) \
  LS_ASSIGN_OR_RETURN_IMPL(LS_STATUS_CONCAT(ls_result_, __LINE__), lhs, expr)
#define LS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
