#pragma once
// UTF-8 helpers for the tokenizer: validation with the offending byte offset, code point
// decoding/encoding, and the GPT-2 "byte-level" alphabet (each byte shown as a printable
// code point) that byte-level BPE vocabularies are written in.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moeq::tok {

// Offset of the first byte where `s` stops being valid UTF-8 (truncated or overlong
// sequences, surrogates, code points above U+10FFFF), or std::string_view::npos.
size_t find_invalid_utf8(std::string_view s);

// Length of the UTF-8 sequence that starts with `lead` (1 for an ASCII or invalid byte).
inline size_t utf8_sequence_length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at s[i] of valid UTF-8 and advances i past it.
uint32_t next_code_point(std::string_view s, size_t& i);
void append_utf8(std::string& out, uint32_t cp);

// byte -> code point of the byte-level alphabet.
const std::array<uint32_t, 256>& byte_level_alphabet();
// A vocabulary string in the byte-level alphabet back to raw bytes; false when it holds a
// code point outside the alphabet.
bool byte_level_to_bytes(std::string_view s, std::string& out);

}  // namespace moeq::tok
