// Imported first by bench/invoke.ts: the loggers are built when their modules load, and stdout must carry only the bench's JSON.
process.env.POWERTOOLS_LOG_LEVEL ??= 'ERROR';
