// Arguments shared by several commands.
//
// Numbers on the command line. CLI11 converts "-5" into an unsigned option by wrapping it round
// (2^64 - 5 events), and its range check prints the double limits of the type (300 digits): these
// validators run on the text first, so a bad number is a usage error (exit 2) that says what is
// allowed.
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <string>

#include "annal/base/status.h"
#include "annal/engine/engine.h"
#include "annal/journal/chain.h"

namespace annal::cli {

// Whole numbers from `low` to `high`, written as plain decimal digits.
[[nodiscard]] CLI::Validator whole_number(std::uint64_t low, std::uint64_t high = UINT64_MAX);

// --accept-data-loss, for the commands that open a store for writing: without it they refuse a
// store whose log lost acknowledged events (journal::Options::accept_data_loss).
void add_accept_data_loss(CLI::App& command, bool& accept);

// --start-timeout SECONDS: how long a command keeps trying at start (`what` it tries), into
// `timeout`, whose value is the default.
void add_start_timeout(CLI::App& command, std::chrono::milliseconds& timeout, const std::string& what);

// --key-file FILE, defaulting to the environment variable ANNAL_KEY_FILE, for every command that
// opens a store: the master keys (a crypto::KeyFile, made by annal masterkey) of an encrypted one.
void add_key_file(CLI::App& command, std::string& key_file);

// Gives `options` the master keys `key_file` names (engine::Options::encryption), or none when it
// is empty (a store in clear; the engine refuses an encrypted one, saying so). KeyFile::load's
// error as it is: it names the file and what to do about it.
[[nodiscard]] Status use_key_file(const std::string& key_file, engine::Options& options);

// The chain keys (annal/journal/chain.h) of the master keys in `options`, by version; empty when
// it has none (a store in clear: its chain is untagged).
[[nodiscard]] journal::ChainKeys chain_keys(const engine::Options& options);

// --sign-key FILE (or ANNAL_SIGN_KEY_FILE): a key file of its own (annal masterkey makes one)
// whose keys sign chain heads (crypto::head_signing_keys), held apart from the master keys.
CLI::Option* add_sign_key(CLI::App& command, std::string& sign_key_file);

// The head signing keys of the key file at `path`, by version, and its newest version.
struct SigningKeys {
  std::uint32_t newest = 0;
  journal::ChainKeys keys;
};
// KeyFile::load's error as it is: it names the file and what to do about it.
[[nodiscard]] Result<SigningKeys> load_signing_keys(const std::string& path);

}  // namespace annal::cli
