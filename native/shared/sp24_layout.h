/*
 * The sparsity metadata of the sparse tensor cores for a 2:4 operand, in one place for the CPU
 * packer (native/cpu/sparse24.cpp) and the CUDA kernels (native/cuda/sparse24.cu).
 *
 * The instruction: mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.{bf16,f16}.{bf16,f16}.f32
 * (positions in increasing order within a group, as here) with
 * sparsity selector 0. A is a 16 x 32 tile of the 2:4 operand W [rows, k]; its 16 x 16 kept
 * values come in 4 registers per lane (the dense m16n8k16 A fragment of the compressed tile):
 * lane = 4 g + t (g = groupID 0..7, t = threadID_in_group 0..3) holds
 *   a[0] = the 2 kept values of 4-group t     of row g,      a[1] = the same of row g + 8,
 *   a[2] = the 2 kept values of 4-group t + 4 of row g,      a[3] = the same of row g + 8,
 * (4-groups counted inside the tile, 8 per row), which is one 32-bit load each from the N:M
 * `values` array [rows, k / 2] because a group's 2 kept values are adjacent there.
 *
 * The metadata of the tile is 16 words of 32 bits; lane 4 g + h (h = 0, 1: the half of the tile,
 * columns 16 h .. 16 h + 15) passes word 2 g + h, and lanes with t >= 2 pass nothing used:
 *   bits [4 c, 4 c + 4)       the 4-group 4 h + c (c = 0..3) of row g:     bits 4c..4c+1 the position
 *                             (0..3) of its first kept value, bits 4c+2..4c+3 of its second;
 *   bits [16 + 4 c, 20 + 4 c) the same for row g + 8.
 * Positions are strictly increasing within a group (the N:M `meta` convention), so the invalid
 * nibbles 0b0000, 0b0101, 0b1010, 0b1111 never occur. Rows past `rows` and groups past k / 4
 * (the padding of the last tiles) carry positions (0, 1) and zero values.
 *
 * The packed metadata array of W: ceil(rows / 16) x ceil(k / 32) tiles, row-major over tiles,
 * 16 words per tile in the order above: word (tile_row, tile_k, 2 g + h) at
 * ((tile_row * ceil(k / 32) + tile_k) * 16 + 2 g + h). Size: about rows k / 32 bytes (2 bits per
 * kept value), a quarter of the one byte per kept value of the N:M `meta`.
 */
#ifndef CORTADO_SP24_LAYOUT_H
#define CORTADO_SP24_LAYOUT_H

#include <stdint.h>

#if defined(__CUDACC__)
#define CT_SP24_HD __host__ __device__ __forceinline__
#else
#define CT_SP24_HD inline
#endif

namespace ct {
namespace sp24 {

constexpr int kTileRows = 16;      // rows of W per mma.sp tile
constexpr int kTileK = 32;         // dense columns of W per tile (8 groups of 4)
constexpr int kWordsPerTile = 16;  // metadata words per tile
constexpr uint32_t kPadNibble = 0x4u;  // positions (0, 1): the metadata of a padding group

CT_SP24_HD int64_t row_tiles(int64_t rows) { return (rows + kTileRows - 1) / kTileRows; }
CT_SP24_HD int64_t k_tiles(int64_t k) { return (k + kTileK - 1) / kTileK; }
/* Number of uint32 words of the packed metadata of a [rows, k] 2:4 operand. */
CT_SP24_HD int64_t packed_words(int64_t rows, int64_t k) { return row_tiles(rows) * k_tiles(k) * kWordsPerTile; }

/*
 * Word w = 2 g + h of tile (tr, kt) built from the N:M positions `meta` [rows, k / 2] (uint8,
 * two per 4-group): the single definition of the layout, used by the CPU packer and, in
 * registers, by the CUDA kernel that reads the N:M meta directly. The positions are assumed
 * valid (checked by the callers).
 */
CT_SP24_HD uint32_t meta_word(int64_t rows, int64_t k, const uint8_t* meta, int64_t tr, int64_t kt, int w) {
  const int g = w >> 1, h = w & 1;
  const int64_t groups = k / 4, per_row = k / 2;
  uint32_t word = 0;
  for (int half = 0; half < 2; ++half) {  // row g, then row g + 8
    const int64_t r = tr * kTileRows + g + 8 * half;
    for (int c = 0; c < 4; ++c) {
      const int64_t grp = kt * 8 + 4 * h + c;
      uint32_t nib = kPadNibble;
      if (r < rows && grp < groups) {
        const uint8_t* p = meta + r * per_row + grp * 2;
        nib = (uint32_t)(p[0] & 3u) | ((uint32_t)(p[1] & 3u) << 2);
      }
      word |= nib << (16 * half + 4 * c);
    }
  }
  return word;
}

/* Where the positions of 4-group `grp` of row r sit: the word index in the packed array and the
 * bit shift of its nibble (positions at shift and shift + 2). The inverse of meta_word, written
 * from the layout independently of it (the unpacker and its test use it). */
CT_SP24_HD void locate(int64_t k, int64_t r, int64_t grp, int64_t* word, int* shift) {
  const int64_t tr = r / kTileRows, kt = grp / 8;
  const int rr = (int)(r % kTileRows), gg = (int)(grp % 8);
  *word = (tr * k_tiles(k) + kt) * kWordsPerTile + 2 * (rr % 8) + gg / 4;
  *shift = 16 * (rr / 8) + 4 * (gg % 4);
}

}  // namespace sp24
}  // namespace ct

#endif
