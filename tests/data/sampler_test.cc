// The RNG against published reference outputs, and the DistributedSampler's
// contract: permutations, determinism, step counts, rank-slice layout, plans,
// evaluation shards, and a golden hash pinning the data order.
#include "runtime/data/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <thread>

#include "runtime/data/rng.h"

namespace lockstep {
namespace data {
namespace {

TEST(Rng, SplitMix64MatchesReferenceOutputs) {
  // splitmix64.c seeded with 1234567 (also Rosetta Code "Pseudo-random numbers/Splitmix64").
  SplitMix64 sm(1234567);
  const uint64_t want[] = {6457827717110365317ULL, 3203168211198807973ULL, 9817491932198370423ULL,
                           4593380528125082431ULL, 16408922859458223821ULL};
  for (uint64_t w : want) EXPECT_EQ(sm.Next(), w);
}

TEST(Rng, Xoshiro256StarStarMatchesReferenceOutputs) {
  // xoshiro256**.c with state {1, 2, 3, 4}.
  Xoshiro256StarStar x(1, 2, 3, 4);
  const uint64_t want[] = {11520ULL,
                           0ULL,
                           1509978240ULL,
                           1215971899390074240ULL,
                           1216172134540287360ULL,
                           607988272756665600ULL};
  for (uint64_t w : want) EXPECT_EQ(x.Next(), w);
}

// A generator replaying fixed words, to check UniformBelow's rejection exactly.
struct ReplayRng {
  std::vector<uint64_t> words;
  size_t next = 0;
  uint64_t Next() { return words.at(next++); }
};

TEST(Rng, UniformBelowRejectsTheBiasedZone) {
  // range 3: 2^64 mod 3 = 1, so only the word whose low product is 0 (x = 0)
  // is rejected; x = 0 -> rejected, then x = 2^63 -> floor(2^63 * 3 / 2^64) = 1.
  ReplayRng r{{0, uint64_t{1} << 63}};
  EXPECT_EQ(UniformBelow(r, 3), 1u);
  EXPECT_EQ(r.next, 2u);
  ReplayRng top{{~uint64_t{0}}};
  EXPECT_EQ(UniformBelow(top, 3), 2u);  // the largest word maps to the largest value
  ReplayRng one{{12345}};
  EXPECT_EQ(UniformBelow(one, 1), 0u);
}

TEST(Rng, FisherYatesIsUniformOverPermutationsOfFour) {
  // 24 permutations x ~1000 draws each; chi-square with 23 degrees of freedom
  // has mean 23, and 70 sits beyond p = 1e-6. Deterministic seed: never flaky.
  Xoshiro256StarStar rng(99);
  std::map<std::vector<int>, int> counts;
  const int kDraws = 24000;
  for (int i = 0; i < kDraws; ++i) {
    std::vector<int> a = {0, 1, 2, 3};
    Shuffle(a, rng);
    ++counts[a];
  }
  ASSERT_EQ(counts.size(), 24u);
  double chi2 = 0;
  for (const auto& kv : counts) chi2 += (kv.second - 1000.0) * (kv.second - 1000.0) / 1000.0;
  EXPECT_LT(chi2, 70.0);
}

SamplerOptions Opts(int64_t begin, int64_t end, int64_t batch, uint64_t seed,
                    bool drop_last = true) {
  SamplerOptions o;
  o.range_begin = begin;
  o.range_end = end;
  o.global_batch = batch;
  o.seed = seed;
  o.drop_last = drop_last;
  return o;
}

TEST(Sampler, EpochOrderIsAPermutationOfTheRange) {
  DistributedSampler s(Opts(100, 1100, 10, 7));
  std::vector<int64_t> order = s.EpochOrder(3);
  std::vector<int64_t> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  std::vector<int64_t> want(1000);
  std::iota(want.begin(), want.end(), 100);
  EXPECT_EQ(sorted, want);
  EXPECT_NE(order, want);  // and actually shuffled
}

TEST(Sampler, SameSeedAndEpochGiveTheSameOrder) {
  DistributedSampler a(Opts(0, 5000, 10, 42)), b(Opts(0, 5000, 32, 42));
  b.EpochOrder(1);  // a different cached epoch must not matter
  EXPECT_EQ(a.EpochOrder(2), b.EpochOrder(2));
  EXPECT_EQ(a.EpochOrder(2), ComputeEpochOrder(0, 5000, 42, 2, true));
}

TEST(Sampler, DifferentEpochsAndSeedsGiveDifferentOrders) {
  DistributedSampler a(Opts(0, 5000, 10, 42)), b(Opts(0, 5000, 10, 43));
  EXPECT_NE(a.EpochOrder(0), a.EpochOrder(1));
  EXPECT_NE(a.EpochOrder(0), b.EpochOrder(0));
  EXPECT_NE(a.EpochOrder(1), b.EpochOrder(0));
}

TEST(Sampler, ShuffleOffVisitsTheRangeInOrder) {
  SamplerOptions o = Opts(5, 25, 4, 1);
  o.shuffle = false;
  DistributedSampler s(o);
  std::vector<int64_t> want(20);
  std::iota(want.begin(), want.end(), 5);
  EXPECT_EQ(s.EpochOrder(0), want);
  EXPECT_EQ(s.EpochOrder(9), want);
}

TEST(Sampler, StepsPerEpochWithAndWithoutDropLast) {
  EXPECT_EQ(DistributedSampler(Opts(0, 10, 3, 0, true)).StepsPerEpoch(), 3);
  EXPECT_EQ(DistributedSampler(Opts(0, 10, 3, 0, false)).StepsPerEpoch(), 4);
  EXPECT_EQ(DistributedSampler(Opts(0, 9, 3, 0, true)).StepsPerEpoch(), 3);
  EXPECT_EQ(DistributedSampler(Opts(0, 9, 3, 0, false)).StepsPerEpoch(), 3);
  EXPECT_EQ(DistributedSampler(Opts(0, 2, 3, 0, true)).StepsPerEpoch(), 0);
  EXPECT_EQ(DistributedSampler(Opts(0, 2, 3, 0, false)).StepsPerEpoch(), 1);
  EXPECT_EQ(DistributedSampler(Opts(0, 55000, 64, 0, true)).StepsPerEpoch(), 859);
}

TEST(Sampler, GlobalBatchesTileTheEpochOrder) {
  for (bool drop_last : {true, false}) {
    DistributedSampler s(Opts(0, 103, 10, 5, drop_last));
    std::vector<int64_t> joined;
    for (int64_t step = 0; step < s.StepsPerEpoch(); ++step) {
      std::vector<int64_t> g = s.GlobalBatch(4, step);
      bool last = step + 1 == s.StepsPerEpoch();
      EXPECT_EQ(g.size(), (!drop_last && last) ? 3u : 10u) << "step " << step;
      joined.insert(joined.end(), g.begin(), g.end());
    }
    std::vector<int64_t> order = s.EpochOrder(4);
    order.resize(drop_last ? 100 : 103);
    EXPECT_EQ(joined, order) << "drop_last " << drop_last;
  }
}

// Reassembles a global batch from all rank slices (micro-step major, then rank)
// and checks order, disjointness, first_position and size balance.
void ExpectSlicesReassemble(const std::vector<int64_t>& global, int world, int accum) {
  std::vector<int64_t> joined;
  size_t min_size = global.size(), max_size = 0;
  for (int micro = 0; micro < accum; ++micro) {
    for (int rank = 0; rank < world; ++rank) {
      RankSliceInfo info = DistributedSampler::RankSlice(global, rank, world, accum, micro);
      EXPECT_EQ(info.first_position, static_cast<int64_t>(joined.size()))
          << "world " << world << " accum " << accum << " rank " << rank << " micro " << micro;
      joined.insert(joined.end(), info.indices.begin(), info.indices.end());
      min_size = std::min(min_size, info.indices.size());
      max_size = std::max(max_size, info.indices.size());
    }
  }
  EXPECT_EQ(joined, global) << "world " << world << " accum " << accum << " batch "
                            << global.size();
  EXPECT_LE(max_size - min_size, 1u)
      << "world " << world << " accum " << accum << " batch " << global.size();
}

TEST(Sampler, RankSlicesOfFullBatchesReassembleTheGlobalBatch) {
  DistributedSampler s(Opts(0, 1000, 24, 11));
  for (int world = 1; world <= 4; ++world) {
    for (int accum = 1; accum <= 2; ++accum) {
      for (int64_t step : {0, 7, 40}) {
        std::vector<int64_t> g = s.GlobalBatch(2, step);
        ExpectSlicesReassemble(g, world, accum);
        // Global batch entries are distinct, so reassembly in order also proves disjointness.
        std::vector<int64_t> sorted = g;
        std::sort(sorted.begin(), sorted.end());
        EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
        int64_t micro = 24 / (world * accum);
        for (int rank = 0; rank < world; ++rank) {
          EXPECT_EQ(static_cast<int64_t>(
                        DistributedSampler::RankSlice(g, rank, world, accum, 0).indices.size()),
                    micro);
        }
      }
    }
  }
}

TEST(Sampler, RankSlicesOfPartialBatchesReassembleTheGlobalBatch) {
  for (int64_t m = 0; m <= 13; ++m) {
    std::vector<int64_t> g(static_cast<size_t>(m));
    std::iota(g.begin(), g.end(), 1000);
    for (int world = 1; world <= 4; ++world) {
      for (int accum = 1; accum <= 2; ++accum) ExpectSlicesReassemble(g, world, accum);
    }
  }
}

TEST(Sampler, PartialBatchFillsTheLastSlotsFirst) {
  // The documented policy: floor(m / S) each, the last m % S slots one more.
  auto sizes = [](int64_t m, int world, int accum) {
    std::vector<int64_t> out;
    for (int micro = 0; micro < accum; ++micro)
      for (int rank = 0; rank < world; ++rank)
        out.push_back(DistributedSampler::SlotPositions(m, rank, world, accum, micro).size());
    return out;
  };
  EXPECT_EQ(sizes(5, 2, 2), (std::vector<int64_t>{1, 1, 1, 2}));
  EXPECT_EQ(sizes(2, 2, 2), (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(sizes(7, 3, 1), (std::vector<int64_t>{2, 2, 3}));
  EXPECT_EQ(sizes(0, 3, 1), (std::vector<int64_t>{0, 0, 0}));
}

TEST(Sampler, PlanComputesTheMicroBatch) {
  Result<MicroBatchPlan> p = DistributedSampler::Plan(64, 4, 2);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->micro_batch, 8);
  EXPECT_EQ(p->world_size, 4);
  EXPECT_EQ(p->accumulation_steps, 2);
}

TEST(Sampler, PlanErrorNamesAllThreeNumbers) {
  Result<MicroBatchPlan> p = DistributedSampler::Plan(100, 3, 7);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  for (const char* w :
       {"global_batch_size 100", "world size 3", "gradient_accumulation_steps 7", "(21)"}) {
    EXPECT_NE(p.status().message().find(w), std::string::npos)
        << p.status().message() << " lacks " << w;
  }
  Result<MicroBatchPlan> zero = DistributedSampler::Plan(64, 0, 1);
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("world size 0"), std::string::npos)
      << zero.status().message();
}

TEST(Sampler, EvalShardsPartitionTheRange) {
  for (int64_t n : {0, 1, 5, 10000, 10001}) {
    IndexRange all{50, 50 + n};
    for (int world = 1; world <= 5; ++world) {
      int64_t next = all.begin, lo = n, hi = 0;
      for (int rank = 0; rank < world; ++rank) {
        IndexRange s = DistributedSampler::EvalShard(all, rank, world);
        EXPECT_EQ(s.begin, next) << "n " << n << " world " << world << " rank " << rank;
        EXPECT_LE(s.begin, s.end);
        next = s.end;
        lo = std::min(lo, s.size());
        hi = std::max(hi, s.size());
      }
      EXPECT_EQ(next, all.end) << "n " << n << " world " << world;
      EXPECT_LE(hi - lo, 1) << "n " << n << " world " << world;
    }
  }
}

TEST(Sampler, ConcurrentCallsAgreeWithSerialOnes) {
  DistributedSampler shared(Opts(0, 20000, 100, 3));
  std::vector<std::vector<int64_t>> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) got[t] = shared.GlobalBatch(t % 2, (t + i) % 200);
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    DistributedSampler fresh(Opts(0, 20000, 100, 3));
    EXPECT_EQ(got[t], fresh.GlobalBatch(t % 2, (t + 49) % 200)) << "thread " << t;
  }
}

uint64_t Fnv1a(const std::vector<int64_t>& v) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int64_t x : v) {
    for (int b = 0; b < 8; ++b) {
      h ^= (static_cast<uint64_t>(x) >> (8 * b)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

TEST(Sampler, GoldenEpochOrderHash) {
  // Pins the data order across library versions: a change here means runs
  // resumed from old checkpoints would see a different sample sequence. Only
  // update it deliberately (and say so in the change note). The values were
  // printed once by this test and reproduced by an independent Python
  // implementation of the spec in sampler.h (SplitMix64 key, xoshiro256**,
  // Lemire, Fisher-Yates), hashed with 64-bit FNV-1a over little-endian int64s.
  DistributedSampler s(Opts(0, 55000, 64, 20240601));
  EXPECT_EQ(Fnv1a(s.EpochOrder(0)), 0xe47af9277cb09a1dULL) << std::hex << Fnv1a(s.EpochOrder(0));
  EXPECT_EQ(Fnv1a(s.EpochOrder(7)), 0xcd946435070e92c9ULL) << std::hex << Fnv1a(s.EpochOrder(7));
}

}  // namespace
}  // namespace data
}  // namespace lockstep
