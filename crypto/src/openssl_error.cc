#include "openssl_error.h"

#include <openssl/err.h>

#include <string>

namespace annal::crypto {

Status openssl_error(std::string_view what) {
  std::string message = "OpenSSL " + std::string(what) + " failed";
  const char* separator = ": ";
  // Every queued error, oldest first: the first is usually the cause, the rest its consequences.
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    message += separator;
    message += text;
    separator = "; ";
  }
  return Status(ErrorCode::failed, std::move(message));
}

}  // namespace annal::crypto
