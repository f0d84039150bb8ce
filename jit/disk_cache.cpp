#include "disk_cache.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace lossjit::jit {

namespace {
constexpr char magic[8] = {'L', 'O', 'S', 'S', 'J', 'I', 'T', '1'};

void put_u64(std::string& s, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
bool get_u64(const std::string& s, std::size_t& pos, std::uint64_t& v) {
    if (pos + 8 > s.size()) return false;
    v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(s[pos + static_cast<std::size_t>(i)])) << (8 * i);
    pos += 8;
    return true;
}
}  // namespace

std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t h = 1469598103934665603ull;
    for (char c : bytes) {
        h ^= static_cast<unsigned char>(c);
        h *= 1099511628211ull;
    }
    return h;
}

std::string cache_file(const std::string& dir, const std::string& key) {
    char name[40];
    std::snprintf(name, sizeof name, "%016llx.lossjit", static_cast<unsigned long long>(fnv1a(key)));
    return dir + "/" + name;
}

DiskRead disk_read(const std::string& dir, const std::string& key, std::string& out) {
    std::ifstream f(cache_file(dir, key), std::ios::binary);
    if (!f) return DiskRead::missing;
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::size_t pos = sizeof magic;
    std::uint64_t klen = 0, plen = 0, sum = 0;
    if (s.size() < sizeof magic || std::memcmp(s.data(), magic, sizeof magic) != 0) return DiskRead::rejected;
    if (!get_u64(s, pos, klen) || klen != key.size() || pos + klen > s.size() || s.compare(pos, klen, key) != 0)
        return DiskRead::rejected;
    pos += klen;
    if (!get_u64(s, pos, plen) || !get_u64(s, pos, sum) || plen == 0 || pos + plen != s.size()) return DiskRead::rejected;
    std::string_view payload(s.data() + pos, plen);
    if (fnv1a(payload) != sum) return DiskRead::rejected;
    out.assign(payload);
    return DiskRead::hit;
}

bool disk_write(const std::string& dir, const std::string& key, std::string_view object) {
    static std::atomic<unsigned> counter{0};
    std::string s(magic, sizeof magic);
    put_u64(s, key.size());
    s += key;
    put_u64(s, object.size());
    put_u64(s, fnv1a(object));
    s.append(object);
    ::mkdir(dir.c_str(), 0755);  // may exist; failure shows up below
    const std::string final_name = cache_file(dir, key);
    const std::string tmp = final_name + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (fd < 0) return false;
    std::size_t done = 0;
    while (done < s.size()) {
        const ssize_t n = ::write(fd, s.data() + done, s.size() - done);
        if (n <= 0) {
            ::close(fd);
            ::unlink(tmp.c_str());
            return false;
        }
        done += static_cast<std::size_t>(n);
    }
    if (::close(fd) != 0 || ::rename(tmp.c_str(), final_name.c_str()) != 0) {
        ::unlink(tmp.c_str());
        return false;
    }
    return true;
}

}  // namespace lossjit::jit
