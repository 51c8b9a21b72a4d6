// SHA-256 (FIPS 180-4), used to key the on-disk program cache: the key must not collide even
// across drivers and source edits, so a fast non-cryptographic hash is not enough.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace clq {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t len);
  void update(const std::string& s) { update(s.data(), s.size()); }
  // Finishes the hash; the object must not be updated afterwards.
  void digest(uint8_t out[32]);
  std::string hex();

 private:
  void block(const uint8_t* p);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, size_t len);

}  // namespace clq
