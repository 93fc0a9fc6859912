package dev.cortado.cli;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * {@code launch --nproc N [--threads T] [--] COMMAND ...}: runs a command of this CLI as N processes
 * of one MPI job on this machine, through Open MPI's {@code mpirun} (the commands that train,
 * train-mnist for now, then train data-parallel). Each process gets T threads (default: the
 * machine's cores divided among the processes); the exit code is mpirun's.
 *
 * <p>When the processes' threads fit in the machine's processors, each process is bound to its
 * own {@code T} cores ({@code --map-by slot:PE=T --bind-to core}): unbound, the scheduler moves
 * the ranks and their JVM threads between cores and a two-process MNIST job on two cores ran at
 * 2,549 samples/s, bound at 2,815-3,204 (docs/distributed.md). {@code --bind none} leaves them
 * unbound (oversubscribed jobs always are).
 */
final class Launch {
    private Launch() {
    }

    static int run(String[] args) throws IOException, InterruptedException {
        int nproc = 0;
        int threads = 0;
        String bind = "core";
        int i = 0;
        for (; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--nproc")) {
                nproc = Integer.parseInt(Main.value(args, ++i, a));
            } else if (a.equals("--bind")) {
                bind = Main.value(args, ++i, a);
                if (!bind.equals("core") && !bind.equals("none")) {
                    System.err.println("launch: --bind takes core or none, not " + bind);
                    return 2;
                }
            } else if (a.equals("--threads")) {
                threads = Integer.parseInt(Main.value(args, ++i, a));
            } else if (a.equals("--")) {
                i++;
                break;
            } else {
                break;
            }
        }
        String[] command = Arrays.copyOfRange(args, i, args.length);
        if (nproc < 1 || command.length == 0) {
            System.err.println("usage: launch --nproc N [--threads T] [--bind core|none] [--] COMMAND [options]   (e.g. launch --nproc 2 train-mnist --epochs 1)");
            return 2;
        }
        Path mpirun = onPath("mpirun");
        if (mpirun == null) {
            System.err.println("launch: mpirun is not on the PATH; install Open MPI (Debian: apt-get install openmpi-bin libopenmpi-dev)");
            return 2;
        }
        if (threads == 0) {
            threads = Math.max(1, Runtime.getRuntime().availableProcessors() / nproc);
        }
        String java = ProcessHandle.current().info().command().orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        boolean fits = (long) nproc * threads <= Runtime.getRuntime().availableProcessors();
        List<String> argv = new ArrayList<>(List.of(mpirun.toString(), "-np", Integer.toString(nproc), "--oversubscribe"));
        if (fits && bind.equals("core")) {
            argv.addAll(List.of("--map-by", "slot:PE=" + threads, "--bind-to", "core"));
        } else {
            argv.addAll(List.of("--bind-to", "none"));
        }
        argv.addAll(List.of("-x", "OMP_NUM_THREADS=" + threads));
        if ("root".equals(System.getProperty("user.name"))) {
            argv.add("--allow-run-as-root");
        }
        argv.addAll(List.of(java, "-cp", System.getProperty("java.class.path"), Main.class.getName()));
        argv.addAll(Arrays.asList(command));
        argv.addAll(List.of("--threads", Integer.toString(threads)));
        System.out.println("launch: " + nproc + " processes x " + threads + " thread(s): " + String.join(" ", command));
        Process p = new ProcessBuilder(argv).inheritIO().start();
        return p.waitFor();
    }

    private static Path onPath(String name) {
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            Path p = Path.of(dir, name);
            if (Files.isExecutable(p)) {
                return p;
            }
        }
        return null;
    }
}
