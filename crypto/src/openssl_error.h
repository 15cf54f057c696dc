// OpenSSL's errors as annal Status values.
#pragma once

#include <string_view>

#include "annal/base/status.h"

namespace annal::crypto {

// A Status for a failed OpenSSL call: "OpenSSL <what>: <ERR_error_string_n of each queued error>".
// Drains this thread's OpenSSL error queue, so a stale error cannot be blamed on a later call.
// ErrorCode::failed: OpenSSL fails here only when out of memory or broken, not because of the data.
[[nodiscard]] Status openssl_error(std::string_view what);

}  // namespace annal::crypto
