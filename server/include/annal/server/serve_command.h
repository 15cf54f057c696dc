// What a program's `serve` command needs around a Server: `annal serve` and the orders example's
// `orders serve` share it. The order: parse_listen, block_serve_signals, open the engine,
// serve_until_stopped, close the engine (a clean close: the next open replays nothing).
#pragma once

#include <string_view>

#include "annal/base/status.h"
#include "annal/engine/engine.h"
#include "annal/server/server.h"

namespace annal::server {

// Sets options.address and options.port from "ADDRESS:PORT" (port 0: any free one).
Status parse_listen(std::string_view listen, ServerOptions& options);

// Blocks SIGINT, SIGTERM and SIGHUP in this thread and in every thread it starts from now on, so
// that serve_until_stopped receives them and none of the engine's threads does. Call it before
// opening the engine.
void block_serve_signals();

// Starts serving `engine`, says where on stdout ("PROGRAM: DIRECTORY on http://ADDRESS:PORT",
// flushed: a script that asked for port 0 reads the port there), serves until SIGINT or SIGTERM
// (SIGHUP reloads the keys file), then stops the server. Errors: those of Server::start.
Status serve_until_stopped(std::string_view program, std::string_view directory, engine::Engine& engine,
                           const ServerOptions& options);

}  // namespace annal::server
