package dev.cortado.tensor;

/** Kinds of device a tensor can live on. */
public enum DeviceType {
    CPU, CUDA
}
