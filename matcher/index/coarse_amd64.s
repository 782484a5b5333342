#include "textflag.h"

// func coarseBestASM(ps *coarseSketch, nps int, e *coarseSketch) (d, n, v int)
//
// coarseSketch: bits[0][0..2] at 0, 8, 16; bits[1][0..2] at 24, 32, 40;
// mask[0] at 48, mask[1] at 56; 64 bytes.
TEXT ·coarseBestASM(SB), NOSPLIT, $0-48
	MOVQ ps+0(FP), SI
	MOVQ nps+8(FP), BX
	MOVQ e+16(FP), DI
	MOVQ $1, R13          // best d
	MOVQ $1, AX           // best n
	XORQ DX, DX           // best v
	XORQ CX, CX           // v
	TESTQ BX, BX
	JLE done
loop:
	MOVQ 48(SI), R8
	ANDQ 48(DI), R8       // m0
	MOVQ 56(SI), R9
	ANDQ 56(DI), R9       // m1
	POPCNTQ R8, R10
	POPCNTQ R9, R11
	ADDQ R11, R10         // n, in blocks
	CMPQ R10, $32         // minSketchBlocks
	JLT next
	MOVQ 0(SI), R11
	XORQ 0(DI), R11
	ANDQ R8, R11
	POPCNTQ R11, R11      // d
	MOVQ 8(SI), R12
	XORQ 8(DI), R12
	ANDQ R8, R12
	POPCNTQ R12, R12
	ADDQ R12, R11
	MOVQ 16(SI), R12
	XORQ 16(DI), R12
	ANDQ R8, R12
	POPCNTQ R12, R12
	ADDQ R12, R11
	MOVQ 24(SI), R12
	XORQ 24(DI), R12
	ANDQ R9, R12
	POPCNTQ R12, R12
	ADDQ R12, R11
	MOVQ 32(SI), R12
	XORQ 32(DI), R12
	ANDQ R9, R12
	POPCNTQ R12, R12
	ADDQ R12, R11
	MOVQ 40(SI), R12
	XORQ 40(DI), R12
	ANDQ R9, R12
	POPCNTQ R12, R12
	ADDQ R12, R11
	LEAQ (R10)(R10*2), R10 // n in bits: three orientations a block
	MOVQ R11, R8
	IMULQ AX, R8          // d · best n
	MOVQ R13, R9
	IMULQ R10, R9         // best d · n
	CMPQ R8, R9
	JGE next
	MOVQ R11, R13
	MOVQ R10, AX
	MOVQ CX, DX
next:
	ADDQ $64, SI
	INCQ CX
	CMPQ CX, BX
	JLT loop
done:
	MOVQ R13, d+24(FP)
	MOVQ AX, n+32(FP)
	MOVQ DX, v+40(FP)
	RET
