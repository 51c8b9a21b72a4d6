// Small text rules shared by the file readers (safetensors, GGUF), so a name is quoted and a
// byte sequence judged the same way in every message.
#pragma once
#include <cstddef>
#include <string>

namespace clq {

// Offset of the first byte that breaks strict UTF-8 (overlong forms, surrogates, code points
// above U+10FFFF, truncated sequences), or std::string::npos.
size_t invalid_utf8_at(const unsigned char* s, size_t n);
// 'name', cut at a UTF-8 boundary with its length when it is long.
std::string quote_name(const std::string& s);
std::string hex_byte(unsigned char c);  // "0x7F"

}  // namespace clq
