// Character-level text data for language models: strict UTF-8 decoding, a
// vocabulary of the corpus' Unicode code points (sorted, so built
// deterministically, and serialisable for checkpoints), a corpus loaded from a
// file or a folder, a train/validation split by position, the window gather
// that turns start positions into (inputs, next-token targets), and the
// add-one-smoothed bigram baseline the language-model recipes must beat.
// Loaded datasets and vocabularies are immutable: any number of threads may
// read them concurrently.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "runtime/data/index_range.h"

namespace lockstep {
namespace data {

// The Debian `fortunes` package's text (scripts/setup.sh installs it).
inline constexpr char kDefaultTextCorpus[] = "/usr/share/games/fortunes";

// Strict UTF-8 -> code points: rejects truncated and overlong sequences,
// surrogates, values above U+10FFFF and NUL bytes (a NUL means a binary file).
// `what` names the source in errors ("file /x/y", "prompt"), which also give the
// byte offset.
Result<std::u32string> DecodeUtf8(const std::string& bytes, const std::string& what);
std::string EncodeUtf8(const std::u32string& code_points);

class Vocabulary {
 public:
  Vocabulary() = default;
  // The distinct code points of `text`; token id = rank in increasing order.
  static Vocabulary FromText(const std::u32string& text);
  // Inverse of Serialize; rejects anything Serialize would not produce.
  static Result<Vocabulary> Deserialize(const std::string& s);
  // "lockstep-char-vocab-v1 <count>\n" then the code points as lowercase hex,
  // space separated, and "\n". ASCII only, so it survives any text channel.
  std::string Serialize() const;

  int64_t size() const { return static_cast<int64_t>(code_points_.size()); }
  const std::vector<char32_t>& code_points() const { return code_points_; }
  // -1 when absent.
  int32_t IdOf(char32_t code_point) const;
  // Errors name the first character outside the vocabulary, its code point and
  // its position (in characters) in `what`.
  Result<std::vector<int32_t>> Encode(const std::u32string& text, const std::string& what) const;
  // UTF-8 text -> ids (invalid UTF-8 or unknown characters are errors).
  Result<std::vector<int32_t>> EncodeUtf8Text(const std::string& utf8, const std::string& what) const;
  // ids -> UTF-8; ids outside [0, size()) abort (a broken invariant).
  std::string Decode(const std::vector<int32_t>& ids) const;

  bool operator==(const Vocabulary& o) const { return code_points_ == o.code_points_; }

 private:
  std::vector<char32_t> code_points_;  // strictly increasing
};

struct TextDataset {
  std::vector<std::string> files;  // the files read, in concatenation order
  Vocabulary vocab;
  std::vector<int32_t> tokens;     // the whole corpus, encoded

  int64_t size() const { return static_cast<int64_t>(tokens.size()); }

  // A UTF-8 file, or a folder whose regular files are read in name order and
  // concatenated as they are. In a folder, these are skipped: subfolders,
  // hidden files, symbolic links (the fortunes package's `.u8` duplicates) and
  // `X.dat` when `X` is present (a strfile index). Errors name the file: a
  // missing path, an empty file, a binary file (NUL bytes or invalid UTF-8), a
  // folder without text files.
  static Result<TextDataset> Load(const std::string& path);
  // As Load, but encodes with a given vocabulary (e.g. from a checkpoint);
  // characters outside it are an error naming the file.
  static Result<TextDataset> LoadWithVocabulary(const std::string& path, const Vocabulary& vocab);
};

struct TextSplit {
  IndexRange train;       // token positions [0, n - n_val)
  IndexRange validation;  // token positions [n - n_val, n), n_val = floor(n * fraction)
};
// Split by position, the last `validation_fraction` for validation. Each part must
// hold at least min_tokens (e.g. seq_len + 1 for one window); fraction in [0, 1).
Result<TextSplit> SplitByPosition(int64_t num_tokens, double validation_fraction, int64_t min_tokens);

// For each of the n window starts s: inputs[i, t] = tokens[s + t] (as floats, the
// ids an Embedding layer reads) and targets[i, t] = tokens[s + t + 1], t < seq_len.
// Windows must lie inside the tokens (abort otherwise). targets may be null.
void GatherWindows(const std::vector<int32_t>& tokens, const int64_t* starts, int64_t n,
                   int64_t seq_len, float* inputs, int32_t* targets);

// Cross-entropy in nats per character of an add-one (Laplace) smoothed bigram
// model P(b | a) = (count(a b) + 1) / (count(a) + V), counted over the adjacent
// pairs inside `train` and evaluated over the adjacent pairs inside `eval`
// (eval.size() - 1 predictions). Divide by ln 2 for bits per character.
double BigramCrossEntropy(const std::vector<int32_t>& tokens, int64_t vocab_size, IndexRange train,
                          IndexRange eval);

}  // namespace data
}  // namespace lockstep
