/**
 * The architectures of current papers, built from {@code dev.cortado.nn} modules: {@link
 * dev.cortado.models.ResNet} (basic and bottleneck blocks, stochastic depth) first.
 */
package dev.cortado.models;
