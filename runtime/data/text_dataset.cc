// Character-level text corpus: UTF-8, vocabulary, loading, split, windows, bigram.
#include "runtime/data/text_dataset.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>
#include <unordered_map>

#include "common/check.h"

namespace lockstep {
namespace data {
namespace {

namespace fs = std::filesystem;

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "%x", v);
  return buf;
}

std::string CodePointName(char32_t c) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "U+%04X", static_cast<unsigned>(c));
  std::string name = buf;
  if (c >= 0x20 && c != 0x7f) name = "'" + EncodeUtf8(std::u32string(1, c)) + "' (" + name + ")";
  return name;
}

Result<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot open text file " + path);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return IoError("error reading text file " + path);
  if (bytes.empty()) return InvalidArgumentError("text file " + path + " is empty");
  return bytes;
}

// The files a corpus path stands for, in concatenation order.
Result<std::vector<std::string>> CorpusFiles(const std::string& path) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) return NotFoundError("text corpus " + path + " does not exist");
  if (fs::is_regular_file(st)) return std::vector<std::string>{path};
  if (!fs::is_directory(st)) {
    return InvalidArgumentError("text corpus " + path + " is neither a regular file nor a folder");
  }
  std::set<std::string> names;  // sorted by byte order
  std::set<std::string> regular;
  for (const fs::directory_entry& e : fs::directory_iterator(path, ec)) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code lec;
    if (e.is_symlink(lec)) continue;
    if (!e.is_regular_file(lec)) continue;
    regular.insert(name);
  }
  if (ec) return IoError("cannot list text corpus folder " + path + ": " + ec.message());
  for (const std::string& name : regular) {
    const bool strfile_index = name.size() > 4 && name.compare(name.size() - 4, 4, ".dat") == 0 &&
                               regular.count(name.substr(0, name.size() - 4)) > 0;
    if (!strfile_index) names.insert(name);
  }
  if (names.empty()) return InvalidArgumentError("text corpus folder " + path + " holds no text files");
  std::vector<std::string> files;
  for (const std::string& name : names) files.push_back((fs::path(path) / name).string());
  return files;
}

Result<TextDataset> LoadImpl(const std::string& path, const Vocabulary* given) {
  LS_ASSIGN_OR_RETURN(std::vector<std::string> files, CorpusFiles(path));
  std::u32string text;
  std::vector<size_t> file_ends;
  for (const std::string& file : files) {
    LS_ASSIGN_OR_RETURN(std::string bytes, ReadWholeFile(file));
    LS_ASSIGN_OR_RETURN(std::u32string part, DecodeUtf8(bytes, "text file " + file));
    text += part;
    file_ends.push_back(text.size());
  }
  TextDataset d;
  d.files = files;
  d.vocab = given ? *given : Vocabulary::FromText(text);
  auto encoded = d.vocab.Encode(text, "corpus");
  if (!encoded.ok()) {
    // Name the file that holds the unknown character.
    size_t first_bad = 0;
    while (first_bad < text.size() && d.vocab.IdOf(text[first_bad]) >= 0) ++first_bad;
    const size_t f = static_cast<size_t>(
        std::upper_bound(file_ends.begin(), file_ends.end(), first_bad) - file_ends.begin());
    const size_t file_begin = f == 0 ? 0 : file_ends[f - 1];
    return InvalidArgumentError("text file " + files[std::min(f, files.size() - 1)] + ": character " +
                                CodePointName(text[first_bad]) + " at character " +
                                std::to_string(first_bad - file_begin) +
                                " is not in the given vocabulary of " + std::to_string(d.vocab.size()) +
                                " characters");
  }
  d.tokens = std::move(encoded).value();
  return d;
}

}  // namespace

Result<std::u32string> DecodeUtf8(const std::string& bytes, const std::string& what) {
  std::u32string out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  auto byte = [&](size_t i) { return static_cast<uint8_t>(bytes[i]); };
  auto bad = [&](size_t i, const std::string& why) {
    return InvalidArgumentError(what + ": invalid UTF-8 at byte offset " + std::to_string(i) + " (" +
                                why + "); expected a UTF-8 text file");
  };
  for (size_t i = 0; i < n;) {
    const uint8_t b0 = byte(i);
    if (b0 == 0) {
      return InvalidArgumentError(what + ": NUL byte at offset " + std::to_string(i) +
                                  "; this looks like a binary file, expected UTF-8 text");
    }
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    int len;
    char32_t cp, min;
    if ((b0 & 0xe0) == 0xc0) {
      len = 2, cp = b0 & 0x1f, min = 0x80;
    } else if ((b0 & 0xf0) == 0xe0) {
      len = 3, cp = b0 & 0x0f, min = 0x800;
    } else if ((b0 & 0xf8) == 0xf0) {
      len = 4, cp = b0 & 0x07, min = 0x10000;
    } else {
      return bad(i, "byte 0x" + Hex(b0) + " cannot start a character");
    }
    if (i + static_cast<size_t>(len) > n) return bad(i, "truncated sequence at end of input");
    for (int k = 1; k < len; ++k) {
      const uint8_t bk = byte(i + static_cast<size_t>(k));
      if ((bk & 0xc0) != 0x80) return bad(i, "missing continuation byte");
      cp = (cp << 6) | (bk & 0x3f);
    }
    if (cp < min) return bad(i, "overlong encoding");
    if (cp > 0x10ffff) return bad(i, "code point above U+10FFFF");
    if (cp >= 0xd800 && cp <= 0xdfff) return bad(i, "UTF-16 surrogate");
    out.push_back(cp);
    i += static_cast<size_t>(len);
  }
  return out;
}

std::string EncodeUtf8(const std::u32string& cps) {
  std::string out;
  for (char32_t c : cps) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xc0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xe0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    } else {
      out.push_back(static_cast<char>(0xf0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3f)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
    }
  }
  return out;
}

// ---- Vocabulary ----

namespace {
constexpr char kVocabMagic[] = "lockstep-char-vocab-v1";
}  // namespace

Vocabulary Vocabulary::FromText(const std::u32string& text) {
  std::vector<char32_t> cps(text.begin(), text.end());
  std::sort(cps.begin(), cps.end());
  cps.erase(std::unique(cps.begin(), cps.end()), cps.end());
  Vocabulary v;
  v.code_points_ = std::move(cps);
  return v;
}

std::string Vocabulary::Serialize() const {
  std::string s = std::string(kVocabMagic) + " " + std::to_string(code_points_.size()) + "\n";
  for (size_t i = 0; i < code_points_.size(); ++i) {
    if (i) s += ' ';
    s += Hex(static_cast<uint32_t>(code_points_[i]));
  }
  return s + "\n";
}

Result<Vocabulary> Vocabulary::Deserialize(const std::string& s) {
  auto bad = [](const std::string& why) {
    return DataLossError("stored character vocabulary is corrupt: " + why);
  };
  std::istringstream in(s);
  std::string magic;
  int64_t count = -1;
  if (!(in >> magic) || magic != kVocabMagic) return bad("expected header '" + std::string(kVocabMagic) + "'");
  if (!(in >> count) || count < 0) return bad("missing character count");
  Vocabulary v;
  for (int64_t i = 0; i < count; ++i) {
    std::string tok;
    if (!(in >> tok)) return bad("holds fewer than the " + std::to_string(count) + " characters it declares");
    size_t used = 0;
    unsigned long value = 0;
    try {
      value = std::stoul(tok, &used, 16);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != tok.size() || tok.size() > 6 || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff) ||
        value == 0) {
      return bad("'" + tok + "' is not a code point in hex");
    }
    const char32_t cp = static_cast<char32_t>(value);
    if (!v.code_points_.empty() && cp <= v.code_points_.back()) return bad("code points not strictly increasing");
    v.code_points_.push_back(cp);
  }
  std::string extra;
  if (in >> extra) return bad("trailing data after " + std::to_string(count) + " characters");
  return v;
}

int32_t Vocabulary::IdOf(char32_t c) const {
  auto it = std::lower_bound(code_points_.begin(), code_points_.end(), c);
  if (it == code_points_.end() || *it != c) return -1;
  return static_cast<int32_t>(it - code_points_.begin());
}

Result<std::vector<int32_t>> Vocabulary::Encode(const std::u32string& text, const std::string& what) const {
  // A direct table for the Basic Multilingual Plane prefix keeps corpus encoding linear.
  std::vector<int32_t> table(0x800, -1);
  for (size_t i = 0; i < code_points_.size() && code_points_[i] < table.size(); ++i) {
    table[code_points_[i]] = static_cast<int32_t>(i);
  }
  std::vector<int32_t> ids(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    const char32_t c = text[i];
    const int32_t id = c < table.size() ? table[c] : IdOf(c);
    if (id < 0) {
      return InvalidArgumentError(what + ": character " + CodePointName(c) + " at position " +
                                  std::to_string(i) + " is not in the vocabulary of " +
                                  std::to_string(size()) + " characters");
    }
    ids[i] = id;
  }
  return ids;
}

Result<std::vector<int32_t>> Vocabulary::EncodeUtf8Text(const std::string& utf8, const std::string& what) const {
  LS_ASSIGN_OR_RETURN(std::u32string text, DecodeUtf8(utf8, what));
  return Encode(text, what);
}

std::string Vocabulary::Decode(const std::vector<int32_t>& ids) const {
  std::u32string text;
  text.reserve(ids.size());
  for (int32_t id : ids) {
    LS_CHECK(id >= 0 && id < size()) << "token id " << id << " outside the vocabulary of " << size();
    text.push_back(code_points_[static_cast<size_t>(id)]);
  }
  return EncodeUtf8(text);
}

// ---- dataset ----

Result<TextDataset> TextDataset::Load(const std::string& path) { return LoadImpl(path, nullptr); }

Result<TextDataset> TextDataset::LoadWithVocabulary(const std::string& path, const Vocabulary& vocab) {
  return LoadImpl(path, &vocab);
}

Result<TextSplit> SplitByPosition(int64_t n, double fraction, int64_t min_tokens) {
  if (!(fraction >= 0.0 && fraction < 1.0)) {
    return InvalidArgumentError("validation fraction must be in [0, 1), got " + std::to_string(fraction));
  }
  const int64_t n_val = static_cast<int64_t>(std::floor(static_cast<double>(n) * fraction));
  TextSplit s;
  s.train = {0, n - n_val};
  s.validation = {n - n_val, n};
  if (s.train.size() < min_tokens || (fraction > 0.0 && s.validation.size() < min_tokens)) {
    return InvalidArgumentError("a corpus of " + std::to_string(n) + " characters split with validation fraction " +
                                std::to_string(fraction) + " gives " + std::to_string(s.train.size()) +
                                " training and " + std::to_string(s.validation.size()) +
                                " validation characters; each part needs at least " + std::to_string(min_tokens) +
                                " (one window of seq_len + 1)");
  }
  return s;
}

void GatherWindows(const std::vector<int32_t>& tokens, const int64_t* starts, int64_t n, int64_t seq_len,
                   float* inputs, int32_t* targets) {
  const int64_t size = static_cast<int64_t>(tokens.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t s = starts[i];
    LS_CHECK(s >= 0 && s + seq_len + (targets ? 1 : 0) <= size)
        << "window [" << s << ", " << s + seq_len << "] outside the " << size << " tokens";
    for (int64_t t = 0; t < seq_len; ++t) {
      inputs[i * seq_len + t] = static_cast<float>(tokens[static_cast<size_t>(s + t)]);
      if (targets) targets[i * seq_len + t] = tokens[static_cast<size_t>(s + t + 1)];
    }
  }
}

double BigramCrossEntropy(const std::vector<int32_t>& tokens, int64_t v, IndexRange train, IndexRange eval) {
  LS_CHECK(v > 0 && train.begin >= 0 && train.end <= static_cast<int64_t>(tokens.size()) && eval.begin >= 0 &&
           eval.end <= static_cast<int64_t>(tokens.size()))
      << "BigramCrossEntropy: ranges outside the tokens";
  LS_CHECK_GE(eval.size(), 2) << "BigramCrossEntropy: evaluation needs at least one pair";
  // Pair counts: a dense V x V table for small vocabularies, a hash map beyond.
  const bool dense = v <= 1024;
  std::vector<int64_t> table(dense ? static_cast<size_t>(v * v) : 0, 0), row(static_cast<size_t>(v), 0);
  std::unordered_map<int64_t, int64_t> sparse;
  auto count = [&](int64_t key) -> int64_t& { return dense ? table[static_cast<size_t>(key)] : sparse[key]; };
  for (int64_t i = train.begin; i + 1 < train.end; ++i) {
    const int64_t a = tokens[static_cast<size_t>(i)], b = tokens[static_cast<size_t>(i + 1)];
    ++count(a * v + b);
    ++row[static_cast<size_t>(a)];
  }
  double total = 0.0;
  for (int64_t i = eval.begin; i + 1 < eval.end; ++i) {
    const int64_t a = tokens[static_cast<size_t>(i)], b = tokens[static_cast<size_t>(i + 1)];
    total -= std::log(static_cast<double>(count(a * v + b) + 1) /
                      static_cast<double>(row[static_cast<size_t>(a)] + v));
  }
  return total / static_cast<double>(eval.size() - 1);
}

}  // namespace data
}  // namespace lockstep
