// The cluster example end to end, as scripts/demo-cluster runs it (small): two instances export to
// one topic, the global revenue model is built from it, each process is killed once at random and
// restarted; the global totals equal the instances' own, and kcat finds every event once.
#include <gtest/gtest.h>

#include <string>

#include "run_program.h"
#include "temp_directory.h"
#include "watchdog.h"

namespace {

TEST(ClusterExample, GlobalTotalsEqualTheInstancesAfterEveryProcessIsKilledOnce) {
  annal::test::Watchdog watchdog("demo-cluster", std::chrono::seconds(290));
  annal::test::TempDirectory dir;
  const annal::test::ProgramRun demo = annal::test::run_program(
      "env DEMO_ORDERS=1500 DEMO_DATA=" + dir.path() + "/data ANNAL_CLUSTER_PROGRAM=" + ANNAL_EXAMPLE_PROGRAM + " " +
      ANNAL_DEMO_CLUSTER);
  EXPECT_EQ(demo.exit_code, 0) << demo.output;
  EXPECT_NE(demo.output.find("demo-cluster: totals equal, every event once"), std::string::npos) << demo.output;
  std::printf("%s", demo.output.c_str());
}

}  // namespace
