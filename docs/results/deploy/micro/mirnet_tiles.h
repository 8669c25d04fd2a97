// mirnet_tiles.h: enhance an RGB565 frame in place with a fixed-size int8 tile model, as
// `mirnet.exported.run_tiled` does in Python. Written by `mirnet export micro`; plain C++ (no
// Arduino or TFLite headers), so that mirnet's tests compile and check it on the host.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>

namespace mirnet {

constexpr int kFrameW = 176, kFrameH = 144;  // QCIF
constexpr int kTileH = 32, kTileW = 32, kOverlap = 8;

// The model's int8 input and output tiles (kTileH x kTileW x 3, RGB) and their quantization.
struct TileIO {
  int8_t* input;
  const int8_t* output;
  float in_scale, out_scale;
  int in_zero, out_zero;
};

// Original pixels that earlier tiles have overwritten but later tiles still read, in ring buffers
// indexed by row % kTileH and column % kTileW.
static uint16_t keep_rows[kTileH][kFrameW];
static uint16_t keep_cols[kTileH][kTileW];

// Tile origins along one side: a step of (tile - overlap), the last tile flush with the edge.
static int tile_starts(int length, int tile, int* starts) {
  int n = 0;
  if (length <= tile) { starts[n++] = 0; return n; }
  for (int s = 0; s < length - tile; s += tile - kOverlap) starts[n++] = s;
  starts[n++] = length - tile;
  return n;
}

// Blending weight of a tile's pixel at offset i: rising over the overlap on a side shared with an
// earlier tile, 1 elsewhere. Tiles are blended in raster order: out = old * (1 - w) + new * w.
static float ramp(int i, bool rising) {
  return (rising && i < kOverlap) ? float(i + 1) / float(kOverlap + 1) : 1.0f;
}

static void unpack565(uint16_t p, float rgb[3]) {
  rgb[0] = ((p >> 11) & 0x1F) * (255.0f / 31.0f);
  rgb[1] = ((p >> 5) & 0x3F) * (255.0f / 63.0f);
  rgb[2] = (p & 0x1F) * (255.0f / 31.0f);
}

static uint16_t pack565(const float rgb[3]) {
  int r = int(rgb[0] * (31.0f / 255.0f) + 0.5f), g = int(rgb[1] * (63.0f / 255.0f) + 0.5f);
  int b = int(rgb[2] * (31.0f / 255.0f) + 0.5f);
  r = r < 0 ? 0 : r > 31 ? 31 : r; g = g < 0 ? 0 : g > 63 ? 63 : g; b = b < 0 ? 0 : b > 31 ? 31 : b;
  return uint16_t((r << 11) | (g << 5) | b);
}

// The original pixel (fy, fx) of the band starting at row `top`, whichever buffer holds it now.
static uint16_t original(const uint16_t* frame, int fy, int fx, int top, int rows_done, int cols_done) {
  if (fy < rows_done) return keep_rows[fy % kTileH][fx];
  if (fx < cols_done) return keep_cols[fy - top][fx % kTileW];
  return frame[fy * kFrameW + fx];
}

// Enhance `frame` (kFrameW x kFrameH RGB565, row-major) in place; run() invokes the model on
// io.input and leaves the result in io.output, returning false on failure.
template <typename Run>
bool enhance_frame(uint16_t* frame, const TileIO& io, Run run) {
  int ys[32], xs[32];  // export.py checks that no side needs more (MICRO_MAX_STARTS)
  const int ny = tile_starts(kFrameH, kTileH, ys), nx = tile_starts(kFrameW, kTileW, xs);
  const float in_scale = io.in_scale, out_scale = io.out_scale;
  const int in_zero = io.in_zero, out_zero = io.out_zero;
  int rows_done = 0;  // rows [0, rows_done) of the frame already hold output
  for (int ty = 0; ty < ny; ++ty) {
    const int top = ys[ty];
    // Keep the originals of rows the next tile row reads again, before this row overwrites them.
    for (int fy = ty + 1 < ny ? ys[ty + 1] : kFrameH; fy < top + kTileH; ++fy)
      if (fy >= rows_done) memcpy(keep_rows[fy % kTileH], &frame[fy * kFrameW], sizeof(keep_rows[0]));
    int cols_done = 0;  // in this tile row, columns [0, cols_done) already hold output
    for (int tx = 0; tx < nx; ++tx) {
      const int left = xs[tx];
      int8_t* in = io.input;
      for (int y = 0; y < kTileH; ++y) {
        for (int x = 0; x < kTileW; ++x) {
          float rgb[3];
          unpack565(original(frame, top + y, left + x, top, rows_done, cols_done), rgb);
          for (int c = 0; c < 3; ++c) {
            int q = int(lroundf(rgb[c] / 255.0f / in_scale)) + in_zero;
            *in++ = int8_t(q < -128 ? -128 : q > 127 ? 127 : q);
          }
        }
      }
      // Keep the originals of columns the next tile reads again, before this tile overwrites them.
      for (int fx = tx + 1 < nx ? xs[tx + 1] : kFrameW; fx < left + kTileW; ++fx)
        if (fx >= cols_done)
          for (int y = 0; y < kTileH; ++y)
            if (top + y >= rows_done) keep_cols[y][fx % kTileW] = frame[(top + y) * kFrameW + fx];
      if (!run()) return false;
      const int8_t* out = io.output;
      for (int y = 0; y < kTileH; ++y) {
        const float wy = ramp(y, ty > 0);
        for (int x = 0; x < kTileW; ++x, out += 3) {
          const float w = wy * ramp(x, tx > 0);
          uint16_t* p = &frame[(top + y) * kFrameW + left + x];
          float old[3], rgb[3];
          unpack565(*p, old);
          for (int c = 0; c < 3; ++c) {
            const float v = (out[c] - out_zero) * out_scale * 255.0f;
            rgb[c] = old[c] * (1.0f - w) + v * w;
          }
          *p = pack565(rgb);
        }
      }
      cols_done = left + kTileW;
    }
    rows_done = top + kTileH;
  }
  return true;
}

}  // namespace mirnet
