// Chat messages as text, and the synthetic demo corpus.
#include <array>

#include "calib/data_readers.h"
#include "calib/tokenizer/tokenizer.h"
#include "core/error.h"

namespace moeq::calib_data {
namespace {
std::string content_text(const nlohmann::json& c, const std::string& where) {
  if (c.is_string()) return c.get<std::string>();
  if (c.is_null()) return {};
  if (c.is_array()) {  // [{type: text, text: ...}]
    std::string out;
    for (size_t k = 0; k < c.size(); ++k) {
      const auto& part = c[k];
      if (!part.is_object() || part.value("type", std::string()) != "text" || !part.contains("text") || !part["text"].is_string())
        throw Error(where + ": content part " + std::to_string(k) + " is not {\"type\": \"text\", \"text\": ...}: only text is used for calibration");
      out += part["text"].get<std::string>();
    }
    return out;
  }
  throw Error(where + ": 'content' must be a string or a list of text parts");
}
}  // namespace

std::string messages_to_text(const nlohmann::json& messages, const Tokenizer& tok, const std::string& where,
                             std::string& style) {
  if (!messages.is_array()) throw Error(where + ": 'messages' must be a list of {role, content}");
  const bool chatml = tok.token_id("<|im_start|>") >= 0 && tok.token_id("<|im_end|>") >= 0;
  const bool gemma = !chatml && tok.token_id("<start_of_turn>") >= 0 && tok.token_id("<end_of_turn>") >= 0;
  style = chatml ? "ChatML (<|im_start|>role ... <|im_end|>)" : gemma ? "Gemma turns (<start_of_turn>role ... <end_of_turn>)"
                                                                    : "'role: content' lines";
  std::string out;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    const std::string here = where + ": messages[" + std::to_string(i) + "]";
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw Error(here + " has no string 'role'");
    std::string role = m["role"];
    const std::string content = content_text(m.value("content", nlohmann::json()), here);
    if (chatml) {
      out += "<|im_start|>" + role + "\n" + content + "<|im_end|>\n";
    } else if (gemma) {
      if (role == "assistant") role = "model";
      out += "<start_of_turn>" + role + "\n" + content + "<end_of_turn>\n";
    } else {
      out += role + ": " + content + "\n";
    }
  }
  return out;
}

// An embedded pool of sentences: English prose, code, numbers, a few other scripts. Enough
// variety for a demo calibration, not a substitute for real data (the description says so).
std::string demo_document(uint64_t n) {
  static const std::array<const char*, 40> pool = {
      "The committee met on Tuesday to review the quarterly budget and the plans for the new library.",
      "Mixture-of-experts models route each token to a few experts chosen by a learned gate.",
      "She opened the window, and the smell of rain on warm stone filled the small kitchen.",
      "def softmax(x):\n    e = np.exp(x - x.max())\n    return e / e.sum()\n",
      "for (int i = 0; i < n; ++i) {\n  sum += a[i] * b[i];\n}\n",
      "In 1969, Apollo 11 landed on the Moon; the mission lasted 8 days, 3 hours and 18 minutes.",
      "Quantization maps 16-bit weights to 4-bit codes with a shared scale per block of 16 values.",
      "The river rises in the mountains, crosses three countries and reaches the sea after 1,200 km.",
      "SELECT name, COUNT(*) FROM orders WHERE total > 100 GROUP BY name ORDER BY 2 DESC;",
      "Photosynthesis converts light energy into chemical energy stored in glucose.",
      "If the test fails, check the tolerance first: float32 sums depend on the order of addition.",
      "Der schnelle braune Fuchs springt über den faulen Hund.",
      "Le chat dort sur le canapé pendant que la pluie tombe doucement.",
      "机器学习模型需要大量的数据进行训练。",
      "東京の天気は晴れ、最高気温は二十五度の予想です。",
      "El mercado abre a las nueve y cierra a las seis de la tarde.",
      "Water boils at 100 °C at sea level, but at only about 70 °C on the summit of Everest.",
      "The function returns -1 when the key is missing, and the caller must handle that case.",
      "<html><body><h1>Hello</h1><p>A paragraph with a <a href=\"/x\">link</a>.</p></body></html>",
      "x = [i ** 2 for i in range(10) if i % 2 == 0]",
      "Revenue grew 12.5% year over year, to $4.2 billion, while costs rose 3%.",
      "The proof proceeds by induction on n: the base case n = 0 is immediate.",
      "He said, \"I'll be there by eight,\" but the train was late again.",
      "Attention weights are computed as softmax(QK^T / sqrt(d)) and applied to the values V.",
      "Please find attached the report; let me know if you have any questions.",
      "The museum's collection includes 3,000 paintings, 450 sculptures and a library of rare maps.",
      "git commit -m \"fix: handle empty input\" && git push origin main",
      "A balanced diet includes vegetables, fruit, whole grains and enough water.",
      "Error: file not found (code 404). Retry in 30 seconds.",
      "The orchestra tuned to the oboe's A before the first movement began.",
      "Tokyo, Paris, Nairobi, Lima and Sydney hosted the conference in consecutive years.",
      "∀x ∈ ℝ: x² ≥ 0, and the equality holds only for x = 0.",
      "Стратегия компании основана на долгосрочных инвестициях.",
      "The robot 🤖 sorted the parcels 📦 by size and weight.",
      "Under load, the server's p99 latency stayed below 20 ms.",
      "Gradient descent takes steps proportional to the negative of the gradient.",
      "The recipe calls for two eggs, 200 g of flour and a pinch of salt.",
      "struct Point { double x, y; };\nPoint mid(Point a, Point b) { return {(a.x + b.x) / 2, (a.y + b.y) / 2}; }",
      "Birds migrate south in autumn, guided by the sun, the stars and the Earth's magnetic field.",
      "The contract takes effect on 1 January and can be cancelled with three months' notice.",
  };
  uint64_t s = n * 0x9E3779B97F4A7C15ULL + 0x1234567ULL;
  auto next = [&s] {  // splitmix64
    uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  };
  const uint64_t sentences = 4 + next() % 9;
  std::string doc;
  for (uint64_t k = 0; k < sentences; ++k) {
    if (k) doc += ' ';
    doc += pool[next() % pool.size()];
  }
  return doc;
}

}  // namespace moeq::calib_data
