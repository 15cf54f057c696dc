// Status and Result<T>: how annal reports operating errors (a full disk, a corrupt record, a
// locked directory) as values. Programmer errors assert instead (assert.h). Every message names
// what failed and where (file, offset, sequence) and, where there is one, what to do about it.
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "annal/base/assert.h"

namespace annal {

enum class ErrorCode {
  ok,
  invalid_argument,  // the caller asked for something impossible (bad option, too-large event)
  corruption,        // stored data fails its checks in a way a crash cannot explain
  io_error,          // the OS reported EIO or similar; durability of recent writes is unknown
  no_space,          // ENOSPC
  locked,            // another process or handle owns the directory
  not_found,
  conflict,          // an append's expected version did not match the stream's
  timed_out,         // a deadline passed first; nothing failed, the caller may wait again
  failed,            // the component stopped after an earlier fatal error; reopen to recover
};

[[nodiscard]] constexpr const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::ok: return "ok";
    case ErrorCode::invalid_argument: return "invalid argument";
    case ErrorCode::corruption: return "corruption";
    case ErrorCode::io_error: return "I/O error";
    case ErrorCode::no_space: return "no space";
    case ErrorCode::locked: return "locked";
    case ErrorCode::not_found: return "not found";
    case ErrorCode::conflict: return "conflict";
    case ErrorCode::timed_out: return "timed out";
    case ErrorCode::failed: return "failed";
  }
  return "unknown";
}

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;  // ok
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {
    ANNAL_ASSERT(code != ErrorCode::ok);
  }

  [[nodiscard]] bool ok() const noexcept { return code_ == ErrorCode::ok; }
  [[nodiscard]] ErrorCode code() const noexcept { return code_; }
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  // "corruption: <message>", for logs and error output.
  [[nodiscard]] std::string to_string() const {
    return ok() ? "ok" : std::string(annal::to_string(code_)) + ": " + message_;
  }

 private:
  ErrorCode code_ = ErrorCode::ok;
  std::string message_;
};

// A value or the Status explaining why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}  // NOLINT: implicit, like std::expected
  Result(Status error) : state_(std::move(error)) {  // NOLINT
    ANNAL_ASSERT(!std::get<Status>(state_).ok());
  }

  [[nodiscard]] bool ok() const noexcept { return std::holds_alternative<T>(state_); }
  [[nodiscard]] T& value() & {
    ANNAL_ASSERT(ok());
    return std::get<T>(state_);
  }
  [[nodiscard]] const T& value() const& {
    ANNAL_ASSERT(ok());
    return std::get<T>(state_);
  }
  [[nodiscard]] T&& value() && {
    ANNAL_ASSERT(ok());
    return std::get<T>(std::move(state_));
  }
  [[nodiscard]] ErrorCode code() const noexcept { return ok() ? ErrorCode::ok : std::get<Status>(state_).code(); }
  [[nodiscard]] const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(state_);
  }

 private:
  std::variant<T, Status> state_;
};

}  // namespace annal
