/**
 * How the native decode program stores the weights of its matrix products: fp32, or int8 in
 * groups of 32 along the input with one fp32 scale each (llama.cpp's Q8_0, llama2.c's runq),
 * the activations quantised the same way at each product (native/kernels.h Q8Block). Every
 * linear op's weight is int8 under "int8", the output head (a tied embedding too) included:
 * at these sizes the head is a large share of the bytes a token reads, and llama.cpp's Q8_0
 * and runq quantise it as well. The embedding lookup stays fp32.
 */
export const WEIGHTS = ["fp32", "int8"] as const
export type Weights = (typeof WEIGHTS)[number]
