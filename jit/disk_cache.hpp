// The on-disk object cache (LOSSJIT_CACHE_DIR): one file per kernel, named by a hash of its key.
// Layout: "LOSSJIT1" | u64 key length | key text | u64 payload length | u64 FNV-1a of payload |
// payload (a relocatable object file). A file whose magic, key, lengths or checksum do not match
// is rejected (and later overwritten), never executed. Writes go to a temporary file renamed into
// place, so readers never see half a file. An unwritable directory means no disk cache, no error.
// No LLVM here.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lossjit::jit {

std::uint64_t fnv1a(std::string_view bytes);
std::string cache_file(const std::string& dir, const std::string& key);

enum class DiskRead { hit, missing, rejected };
// Reads the object for `key`; `out` receives the payload on a hit.
DiskRead disk_read(const std::string& dir, const std::string& key, std::string& out);
// Writes atomically; false when the directory is not writable.
bool disk_write(const std::string& dir, const std::string& key, std::string_view object);

}  // namespace lossjit::jit
