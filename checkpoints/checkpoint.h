// The public API of the checkpoint library in one include: formats, writer,
// asynchronous service, reader with resharding, verification, retention, export.
// See checkpoints/FORMAT.md for the on-disk format and the commit protocol.
#pragma once

#include "checkpoints/catalog.h"
#include "checkpoints/coordinator.h"
#include "checkpoints/file_system.h"
#include "checkpoints/reader.h"
#include "checkpoints/safetensors.h"
#include "checkpoints/service.h"
#include "checkpoints/types.h"
#include "checkpoints/verify.h"
#include "checkpoints/writer.h"
