#include "kestrel/base/status.h"

#include <gtest/gtest.h>

namespace kestrel {
namespace {

StatusOr<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("{} is not positive", v);
  return v;
}

Status doubled(int v, int* out) {
  KS_ASSIGN_OR_RETURN(int x, parse_positive(v));
  *out = 2 * x;
  return Status();
}

TEST(StatusTest, CodesMatchGrpcNumbers) {
  EXPECT_EQ(static_cast<int>(StatusCode::kInvalidArgument), 3);
  EXPECT_EQ(static_cast<int>(StatusCode::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnavailable), 14);
  EXPECT_EQ(static_cast<int>(StatusCode::kUnauthenticated), 16);
}

TEST(StatusTest, MapsCodesToHttpStatuses) {
  EXPECT_EQ(http_status(StatusCode::kOk), 200);
  EXPECT_EQ(http_status(StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(http_status(StatusCode::kNotFound), 404);
  EXPECT_EQ(http_status(StatusCode::kUnavailable), 503);
  EXPECT_EQ(http_status(StatusCode::kResourceExhausted), 429);
}

TEST(StatusTest, FormatsCodeAndMessage) {
  const Status s = not_found("model '{}' is not loaded", "yolo");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.to_string(), "NOT_FOUND: model 'yolo' is not loaded");
  EXPECT_EQ(s.with_context("load").message(), "load: model 'yolo' is not loaded");
  EXPECT_TRUE(Status().with_context("x").ok());
}

TEST(StatusTest, MacrosPropagateErrorsAndValues) {
  int out = 0;
  EXPECT_TRUE(doubled(4, &out).ok());
  EXPECT_EQ(out, 8);
  const Status s = doubled(-1, &out);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "-1 is not positive");
}

TEST(StatusTest, StatusOrFromOkStatusIsAnInternalError) {
  StatusOr<int> v = Status();
  EXPECT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), StatusCode::kInternal);
}

}  // namespace
}  // namespace kestrel
