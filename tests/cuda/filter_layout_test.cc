// Host tests of the HWIO <-> OHWI index maps and the per-element bodies of the
// filter-layout kernels (filter_layout_index.h), over every element of small filters.
// The reference layouts are built by enumerating elements in each layout's own loop
// order, so they do not share the offset formulas under test. No device needed.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "kernels/cuda/filter_layout_index.h"

namespace lockstep::kernels::cuda {
namespace {

using Element = std::array<int64_t, 4>;  // (kh, kw, ic, oc)

std::vector<FilterDims> Filters() {
  return {{1, 1, 1, 1}, {3, 3, 1, 32}, {3, 3, 32, 64}, {2, 5, 3, 4},
          {1, 1, 7, 5}, {5, 2, 3, 1},  {4, 4, 1, 1},   {1, 3, 1, 6}};
}

// The elements in HWIO order (oc fastest) and in OHWI order (ic fastest).
std::vector<Element> HwioOrder(const FilterDims& d) {
  std::vector<Element> order;
  for (int64_t kh = 0; kh < d.kernel_h; ++kh)
    for (int64_t kw = 0; kw < d.kernel_w; ++kw)
      for (int64_t ic = 0; ic < d.in_c; ++ic)
        for (int64_t oc = 0; oc < d.out_c; ++oc) order.push_back({kh, kw, ic, oc});
  return order;
}
std::vector<Element> OhwiOrder(const FilterDims& d) {
  std::vector<Element> order;
  for (int64_t oc = 0; oc < d.out_c; ++oc)
    for (int64_t kh = 0; kh < d.kernel_h; ++kh)
      for (int64_t kw = 0; kw < d.kernel_w; ++kw)
        for (int64_t ic = 0; ic < d.in_c; ++ic) order.push_back({kh, kw, ic, oc});
  return order;
}

// A distinct, exactly representable value per element.
float ValueOf(const Element& e) {
  return static_cast<float>(((e[0] * 8 + e[1]) * 64 + e[2]) * 128 + e[3]) * 0.5f + 1.0f;
}

std::string Name(const FilterDims& d) {
  return std::to_string(d.kernel_h) + "x" + std::to_string(d.kernel_w) + "x" +
         std::to_string(d.in_c) + "x" + std::to_string(d.out_c);
}

TEST(FilterLayoutIndexTest, OffsetsFollowEachLayoutsLoopOrder) {
  for (const FilterDims& d : Filters()) {
    SCOPED_TRACE(Name(d));
    const std::vector<Element> hwio = HwioOrder(d), ohwi = OhwiOrder(d);
    ASSERT_EQ(static_cast<int64_t>(hwio.size()), FilterCount(d));
    for (size_t i = 0; i < hwio.size(); ++i) {
      const Element& e = hwio[i];
      ASSERT_EQ(HwioOffset(d, e[0], e[1], e[2], e[3]), static_cast<int64_t>(i));
    }
    for (size_t j = 0; j < ohwi.size(); ++j) {
      const Element& e = ohwi[j];
      ASSERT_EQ(OhwiOffset(d, e[0], e[1], e[2], e[3]), static_cast<int64_t>(j));
    }
  }
}

TEST(FilterLayoutIndexTest, MapsAreInverseBijectionsThatKeepTheElement) {
  for (const FilterDims& d : Filters()) {
    SCOPED_TRACE(Name(d));
    const std::vector<Element> hwio = HwioOrder(d), ohwi = OhwiOrder(d);
    std::map<Element, int64_t> ohwi_pos;
    for (size_t j = 0; j < ohwi.size(); ++j) ohwi_pos[ohwi[j]] = static_cast<int64_t>(j);
    const int64_t n = FilterCount(d);
    std::vector<int> hits(static_cast<size_t>(n), 0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t j = OhwiIndexOfHwio(d, i);
      ASSERT_GE(j, 0);
      ASSERT_LT(j, n);
      ++hits[static_cast<size_t>(j)];
      ASSERT_EQ(j, ohwi_pos.at(hwio[static_cast<size_t>(i)])) << "i=" << i;
      ASSERT_EQ(HwioIndexOfOhwi(d, j), i) << "i=" << i;
    }
    for (int64_t j = 0; j < n; ++j) ASSERT_EQ(hits[static_cast<size_t>(j)], 1) << "j=" << j;
  }
}

TEST(FilterLayoutIndexTest, HwioToOhwiElementGathersEveryElement) {
  for (const FilterDims& d : Filters()) {
    SCOPED_TRACE(Name(d));
    std::vector<float> hwio, want;
    for (const Element& e : HwioOrder(d)) hwio.push_back(ValueOf(e));
    for (const Element& e : OhwiOrder(d)) want.push_back(ValueOf(e));
    std::vector<float> ohwi(want.size(), std::numeric_limits<float>::quiet_NaN());
    for (int64_t j = 0; j < FilterCount(d); ++j) HwioToOhwiElement(d, hwio.data(), ohwi.data(), j);
    EXPECT_EQ(ohwi, want);
  }
}

TEST(FilterLayoutIndexTest, OhwiToHwioElementOverwritesWithBetaZeroAndAddsWithBetaOne) {
  for (const FilterDims& d : Filters()) {
    SCOPED_TRACE(Name(d));
    std::vector<float> ohwi, grad;
    for (const Element& e : OhwiOrder(d)) ohwi.push_back(ValueOf(e));
    for (const Element& e : HwioOrder(d)) grad.push_back(ValueOf(e));
    const int64_t n = FilterCount(d);

    // beta 0 must not read the stale NaNs.
    std::vector<float> hwio(static_cast<size_t>(n), std::numeric_limits<float>::quiet_NaN());
    for (int64_t i = 0; i < n; ++i) OhwiToHwioElement(d, ohwi.data(), 0.0f, hwio.data(), i);
    EXPECT_EQ(hwio, grad);

    std::vector<float> before(static_cast<size_t>(n)), want(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      before[static_cast<size_t>(i)] = 0.25f * static_cast<float>(i % 7) - 0.5f;
      want[static_cast<size_t>(i)] = before[static_cast<size_t>(i)] + grad[static_cast<size_t>(i)];
    }
    hwio = before;
    for (int64_t i = 0; i < n; ++i) OhwiToHwioElement(d, ohwi.data(), 1.0f, hwio.data(), i);
    EXPECT_EQ(hwio, want);
  }
}

}  // namespace
}  // namespace lockstep::kernels::cuda
