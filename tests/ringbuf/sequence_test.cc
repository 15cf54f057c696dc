#include "annal/ringbuf/sequence.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>

#include "annal/ringbuf/sequence_group.h"

namespace annal::ringbuf {
namespace {

TEST(Sequence, StartsBeforeTheFirstEvent) {
  const Sequence sequence;
  EXPECT_EQ(sequence.get(), -1);
  EXPECT_EQ(Sequence(41).get(), 41);
}

TEST(Sequence, SetIsSeenByGet) {
  Sequence sequence;
  sequence.set(7);
  EXPECT_EQ(sequence.get(), 7);
}

TEST(Sequence, CompareAndSetSucceedsOnlyFromTheExpectedValue) {
  Sequence sequence(3);
  EXPECT_FALSE(sequence.compare_and_set(2, 9));
  EXPECT_EQ(sequence.get(), 3);
  EXPECT_TRUE(sequence.compare_and_set(3, 9));
  EXPECT_EQ(sequence.get(), 9);
}

TEST(Sequence, NeighboursNeverShareACacheLinePair) {
  const auto pair = std::make_unique<Sequence[]>(2);
  const auto first = reinterpret_cast<std::uintptr_t>(&pair[0]);
  const auto second = reinterpret_cast<std::uintptr_t>(&pair[1]);
  EXPECT_EQ(first % kFalseSharingBytes, 0U);
  EXPECT_GE(second - first, kFalseSharingBytes);
}

TEST(SequenceGroup, EmptyGroupReportsTheFallback) {
  const SequenceGroup group;
  EXPECT_TRUE(group.empty());
  EXPECT_EQ(group.minimum(123), 123);
}

TEST(SequenceGroup, MinimumIsTheSlowestMember) {
  Sequence fast(10), slow(4), middle(7);
  SequenceGroup group;
  ASSERT_TRUE(group.add(fast));
  ASSERT_TRUE(group.add(slow));
  ASSERT_TRUE(group.add(middle));
  EXPECT_EQ(group.minimum(100), 4);
  slow.set(12);
  EXPECT_EQ(group.minimum(100), 7);
}

TEST(SequenceGroup, MinimumNeverExceedsTheBound) {
  Sequence member(10);
  SequenceGroup group;
  ASSERT_TRUE(group.add(member));
  EXPECT_EQ(group.minimum(5), 5);
  EXPECT_EQ(group.minimum(50), 10);
}

TEST(SequenceGroup, RemovedMemberNoLongerGates) {
  Sequence fast(10), slow(4);
  SequenceGroup group;
  ASSERT_TRUE(group.add(fast));
  ASSERT_TRUE(group.add(slow));
  EXPECT_TRUE(group.remove(slow));
  EXPECT_EQ(group.minimum(100), 10);
  EXPECT_FALSE(group.remove(slow));
  EXPECT_TRUE(group.remove(fast));
  EXPECT_TRUE(group.empty());
}

TEST(SequenceGroup, RefusesMembersPastItsLimit) {
  const auto members = std::make_unique<Sequence[]>(SequenceGroup::kMembersMax + 1);
  SequenceGroup group;
  for (std::size_t i = 0; i < SequenceGroup::kMembersMax; ++i) ASSERT_TRUE(group.add(members[i]));
  EXPECT_FALSE(group.add(members[SequenceGroup::kMembersMax]));
  // A freed place can be reused.
  EXPECT_TRUE(group.remove(members[0]));
  EXPECT_TRUE(group.add(members[SequenceGroup::kMembersMax]));
}

}  // namespace
}  // namespace annal::ringbuf
