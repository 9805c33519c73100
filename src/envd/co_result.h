// Coroutine forms of RETURN_IF_ERROR / ASSIGN_OR_RETURN (base/result.h): a coroutine must
// `co_return`. Candidates for base/result.h once another component needs them.
#pragma once

#include "base/result.h"

#define CO_RETURN_IF_ERROR(expr)                                                         \
  do {                                                                                   \
    auto&& isobox_co_status_ = (expr);                                                   \
    if (!isobox_co_status_)                                                              \
      co_return ::tl::unexpected<::isobox::Error>(std::move(isobox_co_status_).error()); \
  } while (0)

#define CO_ASSIGN_OR_RETURN(lhs, expr) \
  CO_ASSIGN_OR_RETURN_IMPL_(ISOBOX_CONCAT_(isobox_co_result_, __LINE__), lhs, expr)
#define CO_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr)                                \
  auto tmp = (expr);                                                             \
  if (!tmp) co_return ::tl::unexpected<::isobox::Error>(std::move(tmp).error()); \
  lhs = std::move(*tmp)
