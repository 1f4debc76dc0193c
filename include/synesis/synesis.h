/**
 * @file synesis/synesis.h
 * @brief Umbrella header: includes every public header of the library. @since 1.0
 */
#ifndef SYNESIS_SYNESIS_H
#define SYNESIS_SYNESIS_H

#include "synesis/common.h"
#include "synesis/identity.h"
#include "synesis/tunnel.h"
#include "synesis/request.h"
#include "synesis/stream.h"
#include "synesis/check.h"

#endif /* SYNESIS_SYNESIS_H */
