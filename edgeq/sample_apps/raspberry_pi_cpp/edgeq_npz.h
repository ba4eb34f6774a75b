// edgeq_npz.h: read the arrays of an uncompressed .npz (numpy.savez: a zip of .npy files, stored), which is how
// edgeq writes an export's validation data (validation/inputs.npz, validation/reference.npz). Lets the app run the
// export's own samples with no conversion step. np.savez_compressed (deflate) files are refused with a hint: this
// reader has no zlib. Dependency-free; little-endian hosts only (every edgeq target is).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace edgeq {

struct NpyArray {
  std::string descr;  // numpy dtype string, e.g. "<f4"
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // C order
};

namespace detail {

inline uint32_t le32(const uint8_t* p) { return p[0] | (p[1] << 8) | (p[2] << 16) | (uint32_t(p[3]) << 24); }
inline uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint64_t le64(const uint8_t* p) { return le32(p) | (uint64_t(le32(p + 4)) << 32); }

// The .npy header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (20, 1, 8, 8), }
inline NpyArray parse_npy(const std::vector<uint8_t>& b, const std::string& where) {
  if (b.size() < 10 || std::memcmp(b.data(), "\x93NUMPY", 6) != 0) throw std::runtime_error(where + ": not a .npy");
  const int major = b[6];
  size_t hlen, start;
  if (major == 1) hlen = le16(&b[8]), start = 10;
  else if (major == 2 || major == 3) {
    if (b.size() < 12) throw std::runtime_error(where + ": truncated .npy header");
    hlen = le32(&b[8]), start = 12;
  } else {
    throw std::runtime_error(where + ": unknown .npy version " + std::to_string(major));
  }
  if (start + hlen > b.size()) throw std::runtime_error(where + ": truncated .npy header");
  const std::string h(reinterpret_cast<const char*>(&b[start]), hlen);
  auto value_of = [&](const std::string& key) {
    const size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) throw std::runtime_error(where + ": .npy header lacks '" + key + "'");
    size_t v = h.find(':', k);
    if (v == std::string::npos) throw std::runtime_error(where + ": malformed .npy header");
    ++v;
    while (v < h.size() && h[v] == ' ') ++v;
    return v;
  };
  NpyArray a;
  size_t v = value_of("descr");
  if (v >= h.size() || h[v] != '\'') throw std::runtime_error(where + ": structured dtypes are not supported");
  a.descr = h.substr(v + 1, h.find('\'', v + 1) - v - 1);
  v = value_of("fortran_order");
  if (h.compare(v, 5, "False") != 0) throw std::runtime_error(where + ": Fortran-ordered arrays are not supported");
  v = value_of("shape");
  if (v >= h.size() || h[v] != '(') throw std::runtime_error(where + ": malformed .npy shape");
  const size_t end = h.find(')', v);
  int64_t numel = 1;
  for (size_t i = v + 1; i < end;) {
    while (i < end && (h[i] == ' ' || h[i] == ',')) ++i;
    if (i >= end) break;
    int64_t d = 0;
    while (i < end && h[i] >= '0' && h[i] <= '9') d = d * 10 + (h[i++] - '0');
    a.shape.push_back(d);
    numel *= d;
  }
  const size_t item = a.descr.size() >= 3 ? static_cast<size_t>(std::stoi(a.descr.substr(2))) : 0;
  const size_t data_start = start + hlen;
  if (item == 0 || b.size() - data_start != static_cast<size_t>(numel) * item)
    throw std::runtime_error(where + ": .npy data size does not match its shape and dtype");
  if (a.descr[0] == '>') throw std::runtime_error(where + ": big-endian arrays are not supported");
  a.data.assign(b.begin() + static_cast<std::ptrdiff_t>(data_start), b.end());
  return a;
}

}  // namespace detail

// name (without ".npy") -> array.
inline std::map<std::string, NpyArray> read_npz(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw std::runtime_error("cannot open " + path);
  const auto size = static_cast<size_t>(f.tellg());
  std::vector<uint8_t> z(size);
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(z.data()), static_cast<std::streamsize>(size)))
    throw std::runtime_error("cannot read " + path);
  // End of central directory: the last "PK\5\6" in the final 22 + 65535 bytes (a zip comment may follow it).
  size_t eocd = std::string::npos;
  if (size >= 22) {
    const size_t lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
    for (size_t i = size - 22 + 1; i-- > lowest;)
      if (detail::le32(&z[i]) == 0x06054b50) {
        eocd = i;
        break;
      }
  }
  if (eocd == std::string::npos) throw std::runtime_error(path + " is not a .npz (zip) file");
  if (detail::le16(&z[eocd + 10]) == 0xFFFF || detail::le32(&z[eocd + 16]) == 0xFFFFFFFF)
    throw std::runtime_error(path + ": a zip64 archive (over 65535 arrays or 4 GiB) is not supported here");
  const uint16_t count = detail::le16(&z[eocd + 10]);
  size_t cd = detail::le32(&z[eocd + 16]);
  std::map<std::string, NpyArray> out;
  for (uint16_t e = 0; e < count; ++e) {
    if (cd + 46 > size || detail::le32(&z[cd]) != 0x02014b50) throw std::runtime_error(path + ": corrupt zip directory");
    const uint16_t method = detail::le16(&z[cd + 10]);
    uint64_t csize = detail::le32(&z[cd + 20]);
    const uint16_t nlen = detail::le16(&z[cd + 28]), xlen = detail::le16(&z[cd + 30]), clen = detail::le16(&z[cd + 32]);
    uint64_t local = detail::le32(&z[cd + 42]);
    const std::string name(reinterpret_cast<const char*>(&z[cd + 46]), nlen);
    // Zip64 sizes/offset live in extra field 0x0001, in this order, only for the fields set to 0xFFFFFFFF.
    for (size_t x = cd + 46 + nlen; x + 4 <= cd + 46 + nlen + xlen;) {
      const uint16_t id = detail::le16(&z[x]), len = detail::le16(&z[x + 2]);
      if (id == 0x0001) {
        size_t p = x + 4;
        if (detail::le32(&z[cd + 24]) == 0xFFFFFFFF) p += 8;  // uncompressed size (not needed)
        if (csize == 0xFFFFFFFF) csize = detail::le64(&z[p]), p += 8;
        if (local == 0xFFFFFFFF) local = detail::le64(&z[p]);
      }
      x += 4 + len;
    }
    if (method != 0)
      throw std::runtime_error(path + ": '" + name + "' is compressed (np.savez_compressed); this app reads np.savez "
                               "files (re-save with numpy.savez)");
    if (local + 30 > size || detail::le32(&z[local]) != 0x04034b50) throw std::runtime_error(path + ": corrupt zip entry");
    const size_t data = local + 30 + detail::le16(&z[local + 26]) + detail::le16(&z[local + 28]);
    if (data + csize > size) throw std::runtime_error(path + ": truncated zip entry '" + name + "'");
    std::vector<uint8_t> npy(z.begin() + static_cast<std::ptrdiff_t>(data),
                             z.begin() + static_cast<std::ptrdiff_t>(data + csize));
    const std::string key = name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0
                                ? name.substr(0, name.size() - 4) : name;
    out[key] = detail::parse_npy(npy, path + ":" + name);
    cd += 46 + nlen + xlen + clen;
  }
  return out;
}

}  // namespace edgeq
