// The web console's files (server/console/), built into the server: GET / and what it loads.
#pragma once

#include <optional>
#include <string_view>
#include <utility>

namespace annal::server {

// The file served at `path` ("/" is index.html), or nullopt.
[[nodiscard]] std::optional<std::string_view> console_file(std::string_view path);

}  // namespace annal::server
