// Character-level text data: strict UTF-8, the vocabulary and its serialised
// form, loading files and folders (with the fortunes package's layout), clear
// errors for missing, empty and binary input, the split by position, window
// gathering, the bigram baseline, and the sequence sampler's determinism and
// world-size-invariant rank slicing.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>

#include "runtime/data/sequence_sampler.h"
#include "runtime/data/text_dataset.h"
#include "tests/data/idx_test_util.h"

namespace lockstep {
namespace data {
namespace {

using testing::ScratchDir;

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::u32string U32(const std::string& utf8) { return DecodeUtf8(utf8, "test").value(); }

// ---- UTF-8 ----

TEST(Utf8, RoundTripsMultibyteText) {
  const std::string s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z\n";  // a é € 😀 z
  auto d = DecodeUtf8(s, "x");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(*d, (std::u32string{U'a', 0xe9, 0x20ac, 0x1f600, U'z', U'\n'}));
  EXPECT_EQ(EncodeUtf8(*d), s);
}

TEST(Utf8, RejectsMalformedInputWithOffset) {
  const std::pair<std::string, std::string> cases[] = {
      {std::string("ab\xff"), "cannot start"},       {std::string("ab\xc3"), "truncated"},
      {std::string("\xc0\x80"), "overlong"},         {std::string("\xed\xa0\x80"), "surrogate"},
      {std::string("\xf4\x90\x80\x80"), "U+10FFFF"}, {std::string("a\xc3(b"), "continuation"}};
  for (const auto& [bytes, why] : cases) {
    auto d = DecodeUtf8(bytes, "file f.txt");
    ASSERT_FALSE(d.ok()) << why;
    EXPECT_NE(d.status().message().find(why), std::string::npos) << d.status().message();
    EXPECT_NE(d.status().message().find("f.txt"), std::string::npos) << d.status().message();
  }
  auto nul = DecodeUtf8(std::string("abc\0def", 7), "file g.bin");
  ASSERT_FALSE(nul.ok());
  EXPECT_NE(nul.status().message().find("NUL byte at offset 3"), std::string::npos) << nul.status().message();
  EXPECT_NE(nul.status().message().find("binary"), std::string::npos);
}

// ---- vocabulary ----

TEST(Vocabulary, IsSortedCodePointsAndDeterministic) {
  Vocabulary v = Vocabulary::FromText(U32("hello, w\xc3\xa9rld"));
  EXPECT_EQ(v.code_points(), (std::vector<char32_t>{U' ', U',', U'd', U'e', U'h', U'l', U'o', U'r', U'w', 0xe9}));
  EXPECT_EQ(v, Vocabulary::FromText(U32("w\xc3\xa9rld hello,")));  // order of the text does not matter
  EXPECT_EQ(v.IdOf(U' '), 0);
  EXPECT_EQ(v.IdOf(0xe9), 9);
  EXPECT_EQ(v.IdOf(U'x'), -1);
}

TEST(Vocabulary, SerialisesAndRestores) {
  Vocabulary v = Vocabulary::FromText(U32("\tline\n\xe2\x82\xac%"));
  const std::string s = v.Serialize();
  EXPECT_EQ(s, "lockstep-char-vocab-v1 8\n9 a 25 65 69 6c 6e 20ac\n");
  auto back = Vocabulary::Deserialize(s);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, v);
  for (const char* bad : {"", "lockstep-char-vocab-v2 1\n41\n", "lockstep-char-vocab-v1 3\n41 42\n",
                          "lockstep-char-vocab-v1 2\n42 41\n", "lockstep-char-vocab-v1 1\nzz\n",
                          "lockstep-char-vocab-v1 1\n41 42\n", "lockstep-char-vocab-v1 1\nd800\n"}) {
    auto r = Vocabulary::Deserialize(bad);
    EXPECT_FALSE(r.ok()) << "accepted: " << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kDataLoss);
    }
  }
}

TEST(Vocabulary, EncodesDecodesAndNamesUnknownCharacters) {
  Vocabulary v = Vocabulary::FromText(U32("abc \xc3\xa9"));
  auto ids = v.EncodeUtf8Text("cab \xc3\xa9", "prompt");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<int32_t>{3, 1, 2, 0, 4}));
  EXPECT_EQ(v.Decode(*ids), "cab \xc3\xa9");
  auto unknown = v.EncodeUtf8Text("abxc", "prompt");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("prompt: character 'x' (U+0078) at position 2"), std::string::npos)
      << unknown.status().message();
  auto invalid = v.EncodeUtf8Text("ab\xff", "prompt");
  ASSERT_FALSE(invalid.ok());
  EXPECT_NE(invalid.status().message().find("invalid UTF-8"), std::string::npos);
}

// ---- loading ----

TEST(TextDataset, LoadsAFile) {
  ScratchDir dir;
  WriteText(dir.File("a.txt"), "abracadabra\n");
  auto d = TextDataset::Load(dir.File("a.txt"));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->files, std::vector<std::string>{dir.File("a.txt")});
  EXPECT_EQ(d->vocab.size(), 6);  // \n a b c d r
  EXPECT_EQ(d->size(), 12);
  EXPECT_EQ(d->vocab.Decode(d->tokens), "abracadabra\n");
}

// The fortunes package layout: text files, strfile indexes X.dat, X.u8 symlinks.
TEST(TextDataset, LoadsAFolderInNameOrderSkippingIndexesAndLinks) {
  ScratchDir dir;
  WriteText(dir.File("b"), "second\n%\n");
  WriteText(dir.File("a"), "first\n%\n");
  WriteText(dir.File("a.dat"), std::string("\0\0\0\2binary", 10));
  ASSERT_EQ(symlink("a", dir.File("a.u8").c_str()), 0);
  WriteText(dir.File(".hidden"), "\xff\xfe");
  ASSERT_EQ(mkdir(dir.File("sub").c_str(), 0755), 0);
  WriteText(dir.File("sub/c"), "ignored");
  WriteText(dir.File("notes.dat"), "a text file that only looks like an index\n");
  auto d = TextDataset::Load(dir.path());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->files, (std::vector<std::string>{dir.File("a"), dir.File("b"), dir.File("notes.dat")}));
  EXPECT_EQ(d->vocab.Decode(d->tokens), "first\n%\nsecond\n%\na text file that only looks like an index\n");
}

void ExpectLoadError(const std::string& path, StatusCode code, const std::vector<std::string>& fragments) {
  auto d = TextDataset::Load(path);
  ASSERT_FALSE(d.ok()) << path;
  EXPECT_EQ(d.status().code(), code) << d.status().ToString();
  for (const std::string& f : fragments) {
    EXPECT_NE(d.status().message().find(f), std::string::npos) << "'" << f << "' not in: " << d.status().message();
  }
}

TEST(TextDataset, ClearErrorsForMissingEmptyAndBinaryInput) {
  ScratchDir dir;
  ExpectLoadError(dir.File("nope.txt"), StatusCode::kNotFound, {dir.File("nope.txt"), "does not exist"});
  WriteText(dir.File("empty.txt"), "");
  ExpectLoadError(dir.File("empty.txt"), StatusCode::kInvalidArgument, {dir.File("empty.txt"), "is empty"});
  WriteText(dir.File("image.png"), std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  ExpectLoadError(dir.File("image.png"), StatusCode::kInvalidArgument, {dir.File("image.png"), "invalid UTF-8"});
  WriteText(dir.File("zeros.bin"), std::string("abc\0\0", 5));
  ExpectLoadError(dir.File("zeros.bin"), StatusCode::kInvalidArgument, {dir.File("zeros.bin"), "NUL", "binary"});
  // Inside a folder, the offending file is named.
  ScratchDir folder;
  WriteText(folder.File("a.txt"), "fine\n");
  WriteText(folder.File("b.bin"), std::string("\0\1\2", 3));
  ExpectLoadError(folder.path(), StatusCode::kInvalidArgument, {folder.File("b.bin"), "binary"});
  ScratchDir only_links;
  WriteText(only_links.File(".x"), "hidden\n");
  ExpectLoadError(only_links.path(), StatusCode::kInvalidArgument, {only_links.path(), "no text files"});
}

TEST(TextDataset, LoadWithVocabularyNamesTheFileOfAnUnknownCharacter) {
  ScratchDir dir;
  WriteText(dir.File("a"), "abc\n");
  WriteText(dir.File("b"), "cab\nz\n");
  Vocabulary v = Vocabulary::FromText(U32("abc\n"));
  auto d = TextDataset::LoadWithVocabulary(dir.File("a"), v);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->tokens, (std::vector<int32_t>{1, 2, 3, 0}));
  auto bad = TextDataset::LoadWithVocabulary(dir.path(), v);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(dir.File("b") + ": character 'z' (U+007A) at character 4"),
            std::string::npos)
      << bad.status().message();
}

// ---- split, windows, bigram ----

TEST(TextSplit, LastFractionIsValidation) {
  auto s = SplitByPosition(1000, 0.1, 33);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->train.begin, 0);
  EXPECT_EQ(s->train.end, 900);
  EXPECT_EQ(s->validation.begin, 900);
  EXPECT_EQ(s->validation.end, 1000);
  auto none = SplitByPosition(1000, 0.0, 33);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->validation.size(), 0);
  EXPECT_FALSE(SplitByPosition(1000, 1.0, 1).ok());
  EXPECT_FALSE(SplitByPosition(1000, -0.1, 1).ok());
  auto small = SplitByPosition(100, 0.1, 33);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("10 validation characters"), std::string::npos) << small.status().message();
}

TEST(TextWindows, InputsAreTokensAndTargetsTheNextTokens) {
  std::vector<int32_t> tokens = {5, 6, 7, 8, 9, 10, 11};
  const int64_t starts[] = {0, 3};
  std::vector<float> in(6);
  std::vector<int32_t> tg(6);
  GatherWindows(tokens, starts, 2, 3, in.data(), tg.data());
  EXPECT_EQ(in, (std::vector<float>{5, 6, 7, 8, 9, 10}));
  EXPECT_EQ(tg, (std::vector<int32_t>{6, 7, 8, 9, 10, 11}));
}

TEST(Bigram, MatchesHandComputedAddOneEstimate) {
  // Train "abab" (pairs ab, ba, ab), eval "ab|bb": V = 2 (a=0, b=1).
  std::vector<int32_t> tokens = {0, 1, 0, 1, 0, 1, 1};
  // P(b|a) = (2 + 1) / (2 + 2); P(b|b) = (0 + 1) / (1 + 2).
  const double want = -(std::log(3.0 / 4.0) + std::log(1.0 / 3.0)) / 2.0;
  EXPECT_NEAR(BigramCrossEntropy(tokens, 2, {0, 4}, {4, 7}), want, 1e-12);
  // Without training data every prediction is uniform: ln V.
  EXPECT_NEAR(BigramCrossEntropy(tokens, 2, {0, 0}, {0, 7}), std::log(2.0), 1e-12);
}

// ---- sequence sampler ----

std::unique_ptr<SequenceSampler> MakeSampler(IndexRange range, int64_t seq_len, int64_t batch, uint64_t seed) {
  auto s = SequenceSampler::Create({range, seq_len, batch, seed});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return std::move(s).value();
}

TEST(SequenceSampler, EpochIsAShuffledNonOverlappingGridInsideTheRange) {
  const IndexRange range{100, 1100};
  const int64_t T = 32;
  auto s = MakeSampler(range, T, 6, 7);
  EXPECT_EQ(s->WindowsPerEpoch(), 1000 / 32 - 1);
  EXPECT_EQ(s->StepsPerEpoch(), 30 / 6);
  std::set<int64_t> offsets;
  for (int64_t e = 0; e < 8; ++e) {
    std::vector<int64_t> starts = s->EpochStarts(e);
    ASSERT_EQ(static_cast<int64_t>(starts.size()), s->WindowsPerEpoch());
    std::vector<int64_t> sorted = starts;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_NE(sorted, starts) << "epoch " << e << " is not shuffled";
    const int64_t offset = s->EpochOffset(e);
    offsets.insert(offset);
    ASSERT_GE(offset, 0);
    ASSERT_LT(offset, T);
    for (size_t k = 0; k < sorted.size(); ++k) {
      EXPECT_EQ(sorted[k], range.begin + offset + static_cast<int64_t>(k) * T);
    }
    EXPECT_LE(sorted.back() + T + 1, range.end) << "targets must stay inside the range";
  }
  EXPECT_GT(offsets.size(), 1u) << "the grid should move between epochs";
}

TEST(SequenceSampler, IsAPureFunctionOfSeedEpochAndStep) {
  auto a = MakeSampler({0, 5000}, 16, 8, 42);
  auto b = MakeSampler({0, 5000}, 16, 8, 42);
  auto c = MakeSampler({0, 5000}, 16, 8, 43);
  (void)a->GlobalBatch(5, 3);  // a warm cache for another epoch must not matter
  EXPECT_EQ(a->GlobalBatch(2, 7), b->GlobalBatch(2, 7));
  EXPECT_NE(a->GlobalBatch(2, 7), a->GlobalBatch(3, 7));
  EXPECT_NE(a->GlobalBatch(2, 7), c->GlobalBatch(2, 7));
  EXPECT_NE(a->GlobalBatch(2, 7), a->GlobalBatch(2, 8));
  // Golden: pins the documented derivation (ComputeEpochOrder + offset stream).
  const std::vector<int64_t> g = b->GlobalBatch(0, 0);
  EXPECT_EQ(b->EpochOffset(0), 10);
  EXPECT_EQ(g, (std::vector<int64_t>{3578, 3466, 2794, 4970, 570, 1402, 2650, 3626}));
}

TEST(SequenceSampler, RankSlicesRebuildTheGlobalBatchForEveryWorldSize) {
  auto s = MakeSampler({0, 20000}, 8, 12, 1);
  const std::vector<int64_t> global = s->GlobalBatch(1, 4);
  for (int world : {1, 2, 3, 4}) {
    for (int accum : {1, 3}) {
      std::vector<int64_t> rebuilt;
      int64_t expect_position = 0;
      for (int m = 0; m < accum; ++m) {
        for (int r = 0; r < world; ++r) {
          RankSliceInfo slice = SequenceSampler::RankSlice(global, r, world, accum, m);
          EXPECT_EQ(slice.first_position, expect_position);
          expect_position += static_cast<int64_t>(slice.indices.size());
          rebuilt.insert(rebuilt.end(), slice.indices.begin(), slice.indices.end());
        }
      }
      EXPECT_EQ(rebuilt, global) << "world " << world << " accumulation " << accum;
    }
  }
}

TEST(SequenceSampler, RejectsImpossibleOptions) {
  EXPECT_FALSE(SequenceSampler::Create({{0, 100}, 0, 1, 0}).ok());
  EXPECT_FALSE(SequenceSampler::Create({{0, 100}, 10, 0, 0}).ok());
  auto short_text = SequenceSampler::Create({{0, 15}, 8, 1, 0});
  ASSERT_FALSE(short_text.ok());
  EXPECT_NE(short_text.status().message().find("fewer than 2 x seq_len"), std::string::npos);
  auto big_batch = SequenceSampler::Create({{0, 100}, 10, 10, 0});  // 9 windows
  ASSERT_FALSE(big_batch.ok());
  EXPECT_NE(big_batch.status().message().find("global_batch_size 10"), std::string::npos)
      << big_batch.status().message();
}

TEST(ValidationWindows, ShardsCoverEveryWindowOnceInOrder) {
  const IndexRange val{900, 1000};
  const int64_t T = 8;
  EXPECT_EQ(NumValidationWindows(val, T), 99 / 8);
  const IndexRange cover = ValidationCoverage(val, T);
  EXPECT_EQ(cover.begin, 900);
  EXPECT_EQ(cover.end, 900 + 12 * 8 + 1);
  EXPECT_LE(ValidationWindowStart(val, T, 11) + T + 1, val.end);
  for (int world : {1, 2, 5}) {
    int64_t next = 0;
    for (int r = 0; r < world; ++r) {
      IndexRange shard = ValidationShard(val, T, r, world);
      EXPECT_EQ(shard.begin, next);
      next = shard.end;
    }
    EXPECT_EQ(next, 12);
  }
}

// ---- the default corpus ----

TEST(FortunesCorpus, LoadsTextFilesOnly) {
  struct stat st;
  if (stat(kDefaultTextCorpus, &st) != 0) {
    GTEST_SKIP() << kDefaultTextCorpus << " not installed (scripts/setup.sh installs the fortunes package)";
  }
  auto d = TextDataset::Load(kDefaultTextCorpus);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  for (const std::string& f : d->files) {
    EXPECT_FALSE(f.size() > 4 && f.substr(f.size() - 4) == ".dat") << f;
    EXPECT_FALSE(f.size() > 3 && f.substr(f.size() - 3) == ".u8") << f;
  }
  EXPECT_GT(d->size(), 1000000);
  EXPECT_LT(d->vocab.size(), 400);
  auto split = SplitByPosition(d->size(), 0.1, 257);
  ASSERT_TRUE(split.ok());
  const double nats = BigramCrossEntropy(d->tokens, d->vocab.size(), split->train,
                                         ValidationCoverage(split->validation, 256));
  EXPECT_GT(nats, 1.5);
  EXPECT_LT(nats, 3.5);
  std::printf("fortunes: %zu files, %lld characters, vocabulary %lld, bigram validation %.4f nats/char (%.4f bits)\n",
              d->files.size(), static_cast<long long>(d->size()), static_cast<long long>(d->vocab.size()), nats,
              nats / std::log(2.0));
}

}  // namespace
}  // namespace data
}  // namespace lockstep
