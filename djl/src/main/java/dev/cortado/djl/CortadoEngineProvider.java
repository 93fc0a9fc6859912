package dev.cortado.djl;

import ai.djl.engine.Engine;
import ai.djl.engine.EngineProvider;

/**
 * Registers {@link CortadoEngine} with DJL: listed in
 * {@code META-INF/services/ai.djl.engine.EngineProvider}, so that {@code Engine.getEngine("Cortado")}
 * and {@code Model.newInstance(name, device, "Cortado")} find it once this jar is on the class path.
 */
public final class CortadoEngineProvider implements EngineProvider {
    /** Created by DJL's service loader. */
    public CortadoEngineProvider() {
    }

    /** {@inheritDoc} */
    @Override
    public String getEngineName() {
        return CortadoEngine.ENGINE_NAME;
    }

    /** {@inheritDoc} */
    @Override
    public int getEngineRank() {
        return CortadoEngine.RANK;
    }

    /** {@inheritDoc} */
    @Override
    public Engine getEngine() {
        return CortadoEngine.instance();
    }
}
