package dev.cortado.djl;

import ai.djl.BaseModel;
import ai.djl.Device;
import ai.djl.MalformedModelException;
import ai.djl.ndarray.types.DataType;
import ai.djl.nn.Parameter;
import ai.djl.training.Trainer;
import ai.djl.training.TrainingConfig;
import ai.djl.training.initializer.Initializer;
import ai.djl.util.Pair;
import java.io.IOException;
import java.nio.file.Path;
import java.util.Map;
import java.util.function.Predicate;

/**
 * A DJL {@link ai.djl.Model} of the Cortado engine: a {@link ai.djl.nn.Block} set by the user, its
 * parameters in Cortado arrays, trained through DJL's {@code Trainer}, saved and loaded in DJL's
 * {@code .params} format. Cortado reads no framework model files: {@link #load} needs the block
 * set first and loads its parameters.
 */
public final class CortadoModel extends BaseModel {
    CortadoModel(String name, Device device) {
        super(name);
        manager = CortadoNDManager.system().newSubManager(device);
        manager.setName("cortadoModel");
        dataType = DataType.FLOAT32;
    }

    /** {@inheritDoc} Loads {@code <prefix>-<epoch>.params} into the block set with {@link #setBlock}. */
    @Override
    public void load(Path modelPath, String prefix, Map<String, ?> options)
            throws IOException, MalformedModelException {
        setModelDir(modelPath);
        wasLoaded = true;
        if (block == null) {
            throw new MalformedModelException("Cortado model " + modelName + ": set the Block with setBlock() "
                    + "before load(); the Cortado engine loads DJL .params files into a block, not framework model files");
        }
        loadBlock(prefix == null ? modelName : prefix, options);
    }

    /**
     * {@inheritDoc} The block must be set; the configuration's initializers are applied to it, and
     * the parameters of a loaded block are unfrozen (except the running statistics).
     */
    @Override
    public Trainer newTrainer(TrainingConfig trainingConfig) {
        if (block == null) {
            throw new IllegalStateException("Cortado model " + modelName + ": set a Block before creating a trainer");
        }
        if (wasLoaded) {
            block.freezeParameters(false, p -> p.getType() != Parameter.Type.RUNNING_MEAN
                    && p.getType() != Parameter.Type.RUNNING_VAR);
        }
        for (Pair<Initializer, Predicate<Parameter>> init : trainingConfig.getInitializers()) {
            if (init.getKey() != null && init.getValue() != null) {
                block.setInitializer(init.getKey(), init.getValue());
            }
        }
        return new Trainer(this, trainingConfig);
    }
}
