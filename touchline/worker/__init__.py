"""The worker: claims due step contacts and jobs, sends through the providers, settles the
outcomes, and delivers webhooks."""
