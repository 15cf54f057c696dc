// annal's disruptor-style ring buffer: everything in one include.
#pragma once

#include "annal/ringbuf/batch_event_processor.h"
#include "annal/ringbuf/ring_buffer.h"
#include "annal/ringbuf/sequence.h"
#include "annal/ringbuf/sequence_barrier.h"
#include "annal/ringbuf/wait_strategy.h"
