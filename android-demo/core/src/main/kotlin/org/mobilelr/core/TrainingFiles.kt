package org.mobilelr.core

import java.io.File
import java.io.IOException
import java.io.RandomAccessFile
import java.nio.channels.FileChannel
import java.nio.file.StandardOpenOption
import java.util.concurrent.ConcurrentHashMap

/** Durable small-file writes: a temp file, fsync, rename, fsync of the directory. */
object AtomicFile {
    /** Force [file]'s contents to storage (ORT's `saveCheckpoint` writes without it). */
    fun sync(file: File) {
        RandomAccessFile(file, "rw").use { it.fd.sync() }
    }

    /** Force a directory's entries (a rename is durable only then); best effort where unsupported. */
    fun syncDir(dir: File) {
        try {
            FileChannel.open(dir.toPath(), StandardOpenOption.READ).use { it.force(true) }
        } catch (e: IOException) {
            // some file systems cannot open a directory for fsync; the rename is still atomic
        }
    }

    /** Write [text] to [target] so that a kill at any instant leaves the old or the new file. */
    fun write(target: File, text: String) {
        target.parentFile?.mkdirs()
        val tmp = File(target.path + ".tmp")
        tmp.outputStream().use { out ->
            out.write(text.toByteArray(Charsets.UTF_8))
            out.fd.sync()
        }
        if (!tmp.renameTo(target)) throw IOException("cannot replace ${target.path}")
        target.parentFile?.let { syncDir(it) }
    }
}

/**
 * The fine-tuning run on disk, written so that a kill at any instant leaves a consistent
 * pair of (weights, manager state):
 *
 * ```
 * train/current/checkpoint        ORT checkpoint: weights + AdamW moments, latest
 * train/current/good_checkpoint   weights at the manager's last good step (rollback target)
 * train/current/state.json        {"manager": <ScheduleManager.stateDict()>, "bundle": <sha256>}
 * train/history.jsonl             one line per step (LR, loss, battery, temperature) for the chart
 * train/status.json               the last decision and plan, for the screen
 * train/inference_model.onnx      the fine-tuned model, exported for prediction
 * ```
 *
 * A commit writes a complete `next/` directory (every file fsynced, the ORT checkpoint included)
 * and swaps it in with two renames (`current` -> `old`, `next` -> `current`); [recover] finishes
 * or undoes an interrupted swap.
 *
 * The worker and the screen each make their own instance, so the lock is per directory and
 * process-wide, not per instance. A [reset] (the user asks for a new run) bumps the run's
 * [generation]; a worker commits only for the generation it started with, so a worker still
 * finishing an old run cannot write it back over the new one (nor delete its files).
 */
class TrainingFiles(val dir: File) {
    private val lock: Any = LOCKS.computeIfAbsent(dir.absoluteFile.normalize().path) { Any() }
    private val generationFile = File(dir, "generation")
    private val current = File(dir, "current")
    private val next = File(dir, "next")
    private val old = File(dir, "old")
    val history = File(dir, "history.jsonl")
    val status = File(dir, "status.json")
    val inferenceModel = File(dir, "inference_model.onnx")

    class Resume(val manager: Map<String, Any?>, val bundleSha256: String, val checkpoint: File, val goodCheckpoint: File?)

    init {
        dir.mkdirs()
    }

    /** The run's generation (bumped by [reset]); a worker passes it to [commit]. */
    fun generation(): Long = synchronized(lock) {
        generationFile.takeIf { it.isFile }?.readText()?.trim()?.toLongOrNull() ?: 0L
    }

    /** Undo a half-done commit: `next/` is incomplete by definition, `old/` is the last good one. */
    fun recover(): Unit = synchronized(lock) {
        if (!File(current, STATE).isFile && File(old, STATE).isFile) {
            current.deleteRecursively()
            if (!old.renameTo(current)) throw IOException("cannot restore ${old.path}")
        }
        next.deleteRecursively()
        old.deleteRecursively()
    }

    fun load(): Resume? {
        synchronized(lock) { return loadLocked() }
    }

    private fun loadLocked(): Resume? {
        recover()
        val state = File(current, STATE)
        if (!state.isFile) return null
        val obj = Json.parseObject(state.readText())
        val good = File(current, GOOD).takeIf { it.isFile }
        val bundle = obj["bundle"] as? String ?: throw ValidationError("state.json: bundle", "missing or not a string")
        return Resume(getObject(obj["manager"], "state.json: manager"), bundle, File(current, CKPT), good)
    }

    /**
     * Save the run: [saveWeights] writes the ORT checkpoint into the given file; [accepted]
     * says the manager took this checkpoint as its rollback target (markCheckpoint returned
     * true), else the previous rollback target is carried over. Returns false, writing nothing,
     * when the run was [reset] since [generation] was read (the caller's run is superseded).
     */
    fun commit(saveWeights: (File) -> Unit, accepted: Boolean, manager: ScheduleManager, bundleSha256: String,
               generation: Long): Boolean {
        synchronized(lock) { return commitLocked(saveWeights, accepted, manager, bundleSha256, generation) }
    }

    private fun commitLocked(saveWeights: (File) -> Unit, accepted: Boolean, manager: ScheduleManager,
                             bundleSha256: String, generation: Long): Boolean {
        if (generation != generation()) return false
        recover()
        if (!next.mkdirs()) throw IOException("cannot create ${next.path}")
        val ckpt = File(next, CKPT)
        saveWeights(ckpt)
        AtomicFile.sync(ckpt)
        val good = File(next, GOOD)
        val previousGood = File(current, GOOD)
        if (accepted) ckpt.copyTo(good) else if (previousGood.isFile) previousGood.copyTo(good)
        if (good.isFile) AtomicFile.sync(good)
        val state = linkedMapOf<String, Any?>("manager" to manager.stateDict(), "bundle" to bundleSha256)
        AtomicFile.write(File(next, STATE), Json.write(state))
        AtomicFile.syncDir(next)
        if (current.exists() && !current.renameTo(old)) throw IOException("cannot move ${current.path}")
        if (!next.renameTo(current)) throw IOException("cannot install ${next.path}")
        AtomicFile.syncDir(dir)
        old.deleteRecursively()
        return true
    }

    /** Forget the run (the user asked for a fresh one) and start a new generation; the exported
     *  model stays. */
    fun reset(): Unit = synchronized(lock) {
        AtomicFile.write(generationFile, (generation() + 1).toString())
        current.deleteRecursively()
        next.deleteRecursively()
        old.deleteRecursively()
        history.delete()
        status.delete()
    }

    fun appendHistory(row: Map<String, Any?>): Unit = synchronized(lock) {
        history.appendText(Json.write(row) + "\n")
    }

    fun readHistory(limit: Int = 5000): List<Map<String, Any?>> {
        if (!history.isFile) return emptyList()
        val lines = history.readLines().filter { it.isNotBlank() }
        val tail = if (lines.size > limit) lines.subList(lines.size - limit, lines.size) else lines
        @Suppress("UNCHECKED_CAST")
        return tail.mapNotNull { line -> try { Json.parse(line) as Map<String, Any?> } catch (e: Exception) { null } }
    }

    fun writeStatus(decision: Decision?, manager: ScheduleManager?, note: String) {
        val obj = linkedMapOf<String, Any?>(
            "note" to note,
            "decision" to decision?.toJson(),
            "step" to manager?.step,
            "nominal_steps" to manager?.nominalSteps,
            "planned_total" to manager?.plannedTotal,
            "plan" to manager?.lastPlan?.toJson(),
            "device" to manager?.device?.toJson())
        AtomicFile.write(status, Json.write(obj))
    }

    fun readStatus(): Map<String, Any?>? = try {
        if (status.isFile) Json.parseObject(status.readText()) else null
    } catch (e: Exception) {
        null
    }

    companion object {
        private val LOCKS = ConcurrentHashMap<String, Any>()
        const val CKPT = "checkpoint"
        const val GOOD = "good_checkpoint"
        const val STATE = "state.json"
    }
}
