-- An export's `job_codes` are its selection while it runs; the worker now deletes them in the transaction
-- that ends the job (docs/exports.md, "Job rows stay"). Those of jobs that ended before are deleted here.
DELETE FROM job_codes j USING jobs WHERE jobs.id = j.job_id AND jobs.status IN ('succeeded', 'failed');
