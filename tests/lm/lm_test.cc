// Character language models end to end with the real binary: training on the
// fortunes text writes a checkpoint holding the vocabulary, `lockstep generate`
// samples from it deterministically, and bad input (an empty or binary corpus, a
// prompt outside the vocabulary) fails with a clear error naming the problem.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>

#include "checkpoints/checkpoint.h"
#include "tests/ddp/subprocess.h"

namespace lockstep {
namespace {

using testing::RunCommand;

std::string Lockstep() { return std::string(LOCKSTEP_TEST_BINARY_DIR) + "/bin/lockstep"; }
std::string Recipe() { return std::string(LOCKSTEP_TEST_SOURCE_DIR) + "/tests/ddp/charlm48.pbtxt"; }
bool HaveCorpus() {
  struct stat st {};
  return stat("/usr/share/games/fortunes", &st) == 0;
}
std::string Dir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/lm_" + name + "_" + std::to_string(getpid());
  RunCommand("rm -rf '" + d + "' && mkdir -p '" + d + "'", 30);
  return d;
}

class TrainedModel : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!HaveCorpus()) return;
    run_ = new std::string(Dir("trained"));
    auto r = RunCommand(Lockstep() + " train --quiet --config " + Recipe() + " --run-dir " + *run_ +
                            " --max-steps 6 2>&1",
                        300);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  void SetUp() override {
    if (!HaveCorpus()) GTEST_SKIP() << "fortunes corpus not installed (apt-get install fortunes)";
  }
  static std::string Checkpoint() { return *run_ + "/checkpoints/" + ckpt::StepDirName(6); }
  static std::string* run_;
};
std::string* TrainedModel::run_ = nullptr;

TEST_F(TrainedModel, CheckpointCarriesTheVocabulary) {
  auto reader = ckpt::CheckpointReader::Open(Checkpoint());
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto vocab = (*reader)->meta().extras.find("vocabulary");
  ASSERT_NE(vocab, (*reader)->meta().extras.end());
  EXPECT_NE(vocab->second.find("lockstep-char-vocab-v1"), std::string::npos);
}

TEST_F(TrainedModel, GenerateContinuesThePromptDeterministically) {
  const std::string cmd = Lockstep() + " generate --checkpoint " + Checkpoint() +
                          " --prompt 'The ' --tokens 40 --temperature 0.8 --seed 3 2>&1";
  auto a = RunCommand(cmd, 120);
  auto b = RunCommand(cmd, 120);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output.rfind("The ", 0), 0u) << a.output;
  EXPECT_GT(a.output.size(), 4u + 40u) << "prompt + 40 characters + newline\n" << a.output;
  EXPECT_EQ(a.output, b.output) << "same seed, same text";
  auto c = RunCommand(Lockstep() + " generate --checkpoint " + Checkpoint() +
                          " --prompt 'The ' --tokens 40 --temperature 0.8 --seed 4 2>&1",
                      120);
  EXPECT_NE(a.output, c.output) << "another seed samples other text";
}

TEST_F(TrainedModel, PromptOutsideTheVocabularyIsAClearError) {
  auto r = RunCommand(Lockstep() + " generate --checkpoint " + Checkpoint() + " --prompt 'snow \xe2\x98\x83' 2>&1", 120);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--prompt"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("vocabulary"), std::string::npos) << r.output;
}

TEST_F(TrainedModel, GenerateFromAnImageModelCheckpointIsAClearError) {
  std::string run = Dir("image");
  auto r = RunCommand(Lockstep() + " train --quiet --config " + std::string(LOCKSTEP_TEST_SOURCE_DIR) +
                          "/tests/ddp/mlp48.pbtxt --run-dir " + run + " --max-steps 1 2>&1",
                      300);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunCommand(Lockstep() + " generate --checkpoint " + run + "/checkpoints/" + ckpt::StepDirName(1) +
                     " --prompt x 2>&1",
                 60);
  EXPECT_EQ(r.exit_code, 4) << r.output;
  EXPECT_NE(r.output.find("not a language-model checkpoint"), std::string::npos) << r.output;
}

TEST(TextCorpus, EmptyAndBinaryFilesAreNamed) {
  std::string dir = Dir("bad");
  std::ofstream(dir + "/empty.txt").close();
  {
    std::ofstream f(dir + "/binary.txt", std::ios::binary);
    f << "abc" << '\0' << "def";
  }
  for (const char* name : {"empty.txt", "binary.txt"}) {
    auto r = RunCommand(Lockstep() + " train --quiet --config " + Recipe() + " --set data.path=" + dir + "/" +
                            name + " --max-steps 1 2>&1",
                        60);
    EXPECT_NE(r.exit_code, 0) << name;
    EXPECT_NE(r.output.find(name), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace lockstep
